"""Redaction by key, masking of known secret values, and canonical digests."""

from __future__ import annotations

import copy

import pytest

from kernel.governance.redaction import DEFAULT_RULES, REDACTED, RedactionRules, canonical_json, digest, mask, redact


@pytest.mark.parametrize("key", [
    "password", "DB_PASSWORD", "passwd", "client_secret", "clientSecret", "token", "access_token", "authToken",
    "x-auth-token", "api_key", "api-key", "apikey", "X-Api-Key", "API_KEY", "Authorization", "credentials",
    "connection_string", "connectionString", "ConnectionString", "private_key", "Cookie",
])
def test_sensitive_keys_are_redacted(key: str) -> None:
    assert redact({key: "s3cr3t", "other": "kept"}) == {key: REDACTED, "other": "kept"}


@pytest.mark.parametrize("key", ["max_tokens", "prompt_tokens", "tokens", "tokenizer", "vendor", "keyword", "author"])
def test_ordinary_keys_are_kept(key: str) -> None:
    assert not DEFAULT_RULES.sensitive(key)
    assert redact({key: 42}) == {key: 42}


def test_redaction_is_recursive_and_leaves_the_input_alone() -> None:
    data = {
        "tool": "http.get",
        "arguments": {"url": "https://erp", "headers": [{"name": "a", "Authorization": "Bearer abc"}],
                      "auth": {"api_key": {"nested": "whole subtree"}}},
        "steps": [["x", {"password": "p"}], ("tuple", {"token": "t"})],
        "password": None,
    }
    original = copy.deepcopy(data)
    result = redact(data)
    assert result == {
        "tool": "http.get",
        "arguments": {"url": "https://erp", "headers": [{"name": "a", "Authorization": REDACTED}],
                      "auth": {"api_key": REDACTED}},
        "steps": [["x", {"password": REDACTED}], ("tuple", {"token": REDACTED})],
        "password": None,  # "not set" leaks nothing
    }
    assert data == original
    assert result["arguments"] is not data["arguments"]
    assert redact("plain") == "plain" and redact(5) == 5 and redact(None) is None


def test_extra_patterns_and_replacement() -> None:
    rules = DEFAULT_RULES.with_patterns(r"^pin$", r"session[_-]?id")
    assert redact({"pin": 1234, "spin": 3, "Session-Id": "abc", "password": "p"}, rules) == {
        "pin": REDACTED, "spin": 3, "Session-Id": REDACTED, "password": REDACTED,
    }
    custom = RedactionRules(key_patterns=("iban",), replacement="***")
    assert redact({"IBAN": "DE00", "password": "p"}, custom) == {"IBAN": "***", "password": "p"}
    with pytest.raises(ValueError, match="invalid key pattern"):
        RedactionRules(key_patterns=("(",))
    with pytest.raises(ValueError):
        RedactionRules(key_patterns=())


def test_a_structure_that_contains_itself_is_refused() -> None:
    loop: dict = {"a": 1}
    loop["self"] = loop
    with pytest.raises(ValueError, match="contains itself"):
        redact(loop)
    shared = {"x": 1}
    assert redact({"a": shared, "b": shared}) == {"a": {"x": 1}, "b": {"x": 1}}  # shared is not a cycle


def test_mask_replaces_known_values_longest_first_in_one_pass() -> None:
    text = "GET https://erp?key=abc123 failed; key abc rejected; retry with abc123"
    assert mask(text, ["abc", "abc123"]) == (
        "GET https://erp?key=[redacted] failed; key [redacted] rejected; retry with [redacted]"
    )
    assert mask("a red car", ["red", "dact"]) == "a [redacted] car"  # the replacement is not masked again
    assert mask("x.y+z", [".", "+"]) == "x[redacted]y[redacted]z"  # values are literal, not patterns
    assert mask("nothing here", ["", "zzz"]) == "nothing here"
    assert mask("tok", [], replacement="***") == "tok"
    assert mask("tok", ["tok"], replacement="***") == "***"


def test_digest_is_canonical() -> None:
    a = {"b": [1, 2.5, "é"], "a": {"y": True, "x": None}}
    b = {"a": {"x": None, "y": True}, "b": [1, 2.5, "é"]}
    assert digest(a) == digest(b) and len(digest(a)) == 64
    assert canonical_json(a) == '{"a":{"x":null,"y":true},"b":[1,2.5,"é"]}'
    assert digest(a) != digest({**a, "b": [1, 2.5, "e"]})
    assert digest([1, 2]) != digest([2, 1])
    with pytest.raises(ValueError):
        digest({"n": float("inf")})
    with pytest.raises(TypeError):
        digest({"s": {1}})
