"""`${secret:NAME}` and `${env:NAME}` references inside config strings.

References are checked for shape when a config is validated and resolved only at the moment of
use (an MCP server start, an HTTP call), never during validation, and their values are never
logged. Key Vault secret names are 1-127 characters of letters, digits and hyphens; environment
names follow the usual identifier rule.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping

KEY_VAULT_NAME = re.compile(r"^[0-9A-Za-z-]{1,127}$")
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_REFERENCE = re.compile(r"\$\{([^}]*)\}")
SOURCES = ("secret", "env")


@dataclass(frozen=True)
class Reference:
    """One `${source:name}` occurrence."""

    source: str
    name: str

    def __str__(self) -> str:
        return f"${{{self.source}:{self.name}}}"


class MalformedReference(ValueError):
    """A malformed `${...}` reference; the message says what is wrong without any value."""


def find_references(text: str) -> list[Reference]:
    """All references in ``text``; raises :class:`MalformedReference` on the first malformed one."""
    unclosed = text.rfind("${")
    if unclosed != -1 and "}" not in text[unclosed:]:
        raise MalformedReference(
            "unterminated reference: '${' without a closing '}' "
            "(expected ${secret:NAME} or ${env:NAME})"
        )
    found: list[Reference] = []
    for match in _REFERENCE.finditer(text):
        found.append(_parse(match.group(1)))
    return found


def _parse(inner: str) -> Reference:
    source, sep, name = inner.partition(":")
    if not sep:
        raise MalformedReference(
            f"reference '${{{inner}}}' has no source: expected ${{secret:NAME}} or ${{env:NAME}}"
        )
    if source not in SOURCES:
        raise MalformedReference(
            f"unknown reference source '{source}': expected one of {', '.join(SOURCES)} "
            f"(as in ${{secret:NAME}} or ${{env:NAME}})"
        )
    if source == "secret" and not KEY_VAULT_NAME.match(name):
        raise MalformedReference(
            f"secret name '{name}' is not a valid Key Vault secret name: "
            "expected 1-127 letters, digits or hyphens"
        )
    if source == "env" and not ENV_NAME.match(name):
        raise MalformedReference(
            f"environment variable name '{name}' is invalid: expected letters, digits and "
            "underscores, not starting with a digit"
        )
    return Reference(source, name)


def resolve(text: str, lookup: Callable[[Reference], str]) -> str:
    """Replace every reference in ``text`` with ``lookup(reference)``, at the moment of use."""
    find_references(text)  # raise on malformed references before resolving any
    return _REFERENCE.sub(lambda m: lookup(_parse(m.group(1))), text)


class UnresolvedReference(LookupError):
    """A reference whose value is not available; the message names the reference, never a value."""


def local_secret_variable(name: str) -> str:
    """The environment variable that stands in for Key Vault secret ``name`` locally."""
    return name.upper().replace("-", "_")


def environment_lookup(environ: Mapping[str, str]) -> Callable[[Reference], str]:
    """The local resolver: `${env:X}` is ``environ[X]``; `${secret:x-y}` is ``environ[X_Y]``."""

    def lookup(reference: Reference) -> str:
        variable = reference.name if reference.source == "env" else local_secret_variable(reference.name)
        if variable not in environ:
            raise UnresolvedReference(f"{reference} is not set (looked for environment variable {variable})")
        return environ[variable]

    return lookup
