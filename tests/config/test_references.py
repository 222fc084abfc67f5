"""`${secret:NAME}` / `${env:NAME}` references: shape checked early, resolved only at use."""

from __future__ import annotations

import pytest

from kernel.config.references import MalformedReference, Reference, find_references, resolve


def test_finds_every_reference() -> None:
    assert find_references("Bearer ${secret:github-token} as ${env:USER_NAME}") == [
        Reference("secret", "github-token"),
        Reference("env", "USER_NAME"),
    ]
    assert find_references("no references, just $HOME and {braces}") == []


@pytest.mark.parametrize(
    "text, says",
    [
        ("${secret:}", "not a valid Key Vault secret name"),
        ("${secret:" + "a" * 128 + "}", "not a valid Key Vault secret name"),
        ("${secret:has space}", "not a valid Key Vault secret name"),
        ("${env:1ABC}", "environment variable name '1ABC' is invalid"),
        ("${kv:name}", "unknown reference source 'kv'"),
        ("${name}", "has no source"),
        ("Bearer ${secret:token", "unterminated reference"),
    ],
)
def test_malformed_references_are_named(text: str, says: str) -> None:
    with pytest.raises(MalformedReference, match=says):
        find_references(text)


def test_resolve_substitutes_at_use_only() -> None:
    looked_up = []

    def lookup(reference: Reference) -> str:
        looked_up.append(reference)
        return "VALUE"

    assert resolve("Bearer ${secret:tok}", lookup) == "Bearer VALUE"
    assert looked_up == [Reference("secret", "tok")]


def test_resolve_checks_everything_before_looking_anything_up() -> None:
    looked_up = []
    with pytest.raises(MalformedReference):
        resolve("${secret:ok} ${secret:not_ok}", lambda r: looked_up.append(r) or "x")
    assert looked_up == []


def test_local_lookup_maps_secret_names_to_environment_variables() -> None:
    from kernel.config.references import UnresolvedReference, environment_lookup

    lookup = environment_lookup({"GITHUB_MCP_TOKEN": "t0k3n", "HOME": "/home/me"})
    assert resolve("Bearer ${secret:github-mcp-token}", lookup) == "Bearer t0k3n"
    assert resolve("${env:HOME}/x", lookup) == "/home/me/x"
    with pytest.raises(UnresolvedReference, match="GITHUB_MCP_TOKEN|MISSING") as error:
        resolve("${secret:missing}", lookup)
    assert "t0k3n" not in str(error.value)
