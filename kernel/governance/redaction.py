"""Keeping secrets out of audit records and logs: key-based redaction, value masking, digests.

Three tools, for three situations:

* :func:`redact` copies structured data (tool arguments, config changes) with the values of
  sensitive-looking keys replaced by ``"[redacted]"``. It goes by key name because that is what
  is known about arbitrary tool arguments: a value called ``api_key`` is a secret whatever it is.
* :func:`mask` replaces secret values the caller already knows (resolved ``${secret:...}``
  references, tokens) wherever they appear in free text such as a tool's error message, where no
  key names them.
* :func:`digest` is the SHA-256 of a value's canonical JSON: it lets an audit record prove which
  result a tool returned without storing the result (or anything secret in it).

The default key patterns are case-insensitive regular expressions searched anywhere in a key
(``db_password``, ``X-Api-Key``, ``clientSecret`` all match). ``token`` does not match
``tokens`` or ``tokenizer``, so usage figures such as ``max_tokens`` stay readable; add a pattern
with :meth:`RedactionRules.with_patterns` where a ``tokens`` key holds secrets.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "DEFAULT_KEY_PATTERNS",
    "DEFAULT_RULES",
    "REDACTED",
    "RedactionRules",
    "canonical_json",
    "digest",
    "mask",
    "redact",
]

#: What a redacted value or a masked secret becomes.
REDACTED = "[redacted]"

#: Key patterns redacted by default (case-insensitive, searched anywhere in the key).
DEFAULT_KEY_PATTERNS: tuple[str, ...] = (
    r"password",
    r"passwd",
    r"secret",
    r"token(?!s|izer)",
    r"api[_-]?key",
    r"private[_-]?key",
    r"authorization",
    r"credential",
    r"connection[_-]?string",
    r"cookie",
)


@dataclass(frozen=True)
class RedactionRules:
    """Which keys are sensitive (regular expressions, case-insensitive) and what replaces their values."""

    key_patterns: tuple[str, ...] = DEFAULT_KEY_PATTERNS
    replacement: str = REDACTED
    _matcher: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        patterns = tuple(self.key_patterns)
        if not patterns or not all(isinstance(p, str) and p for p in patterns):
            raise ValueError("key_patterns must be a non-empty sequence of non-empty regular expressions")
        try:
            matcher = re.compile("|".join(f"(?:{p})" for p in patterns), re.IGNORECASE)
        except re.error as error:
            raise ValueError(f"invalid key pattern: {error}") from None
        object.__setattr__(self, "key_patterns", patterns)
        object.__setattr__(self, "_matcher", matcher)

    def with_patterns(self, *patterns: str) -> RedactionRules:
        """These rules plus more key patterns (e.g. ``r"^pin$"``, ``r"session[_-]?id"``)."""
        return RedactionRules(self.key_patterns + tuple(patterns), self.replacement)

    def sensitive(self, key: Any) -> bool:
        """Whether values under ``key`` are redacted."""
        return self._matcher.search(str(key)) is not None


DEFAULT_RULES = RedactionRules()


def redact(data: Any, rules: RedactionRules | None = None) -> Any:
    """A copy of ``data`` with the values of sensitive keys replaced, recursively through dicts and lists.

    The whole value under a sensitive key is replaced, even a dict or list, since its parts are as
    secret as the whole. ``None`` stays ``None``: "no password set" leaks nothing and is worth
    seeing. Mappings come back as dicts, lists as lists, tuples as tuples; other values as they are.
    The input is not changed. A container that contains itself raises ``ValueError``.
    """
    return _redact(data, rules or DEFAULT_RULES, set())


def _redact(value: Any, rules: RedactionRules, active: set[int]) -> Any:
    if isinstance(value, Mapping):
        container: Any = value
    elif isinstance(value, (list, tuple)):
        container = value
    else:
        return value
    if id(container) in active:
        raise ValueError("cannot redact a structure that contains itself")
    active.add(id(container))
    try:
        if isinstance(container, Mapping):
            return {
                key: (rules.replacement if item is not None and rules.sensitive(key) else _redact(item, rules, active))
                for key, item in container.items()
            }
        items = [_redact(item, rules, active) for item in container]
        return tuple(items) if isinstance(container, tuple) else items
    finally:
        active.discard(id(container))


def mask(text: str, secrets: Iterable[str], *, replacement: str = REDACTED) -> str:
    """``text`` with every occurrence of each known secret value replaced, longest first, in one pass.

    One pass means a replacement is never itself searched again, and longest first means a secret
    that contains another (``abc123`` and ``abc``) is masked whole. Empty secrets are ignored.
    """
    values = sorted({s for s in secrets if isinstance(s, str) and s}, key=len, reverse=True)
    if not values or not text:
        return text
    return re.compile("|".join(re.escape(v) for v in values)).sub(lambda _: replacement, text)


def canonical_json(value: Any) -> str:
    """One text per JSON value: sorted keys, no whitespace, UTF-8 characters unescaped, no NaN.

    Equal data always gives equal text (and so equal digests) whatever its key order. Raises
    ``TypeError`` or ``ValueError`` for what is not plain JSON.
    """
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def digest(value: Any) -> str:
    """The SHA-256 (64 hex digits) of ``value``'s canonical JSON, e.g. a tool result's fingerprint."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
