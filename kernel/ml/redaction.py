"""Redaction of training data exported from agents' turns: secrets and personal data, by rule.

Two kinds of rules, configured per adapter (``export.redaction`` in its config):

* **key rules** on structured data (event data, tool arguments): the values of sensitive-looking
  keys become ``[redacted]``. These are :class:`kernel.governance.redaction.RedactionRules`, the
  audit log's defaults (password, secret, token, api key, credential, ...) plus the adapter's
  ``keys`` patterns.
* **text rules** on every string, since personal data sits in free text where no key names it:

  ========  ==============================================================  ================
  name      matches                                                         becomes
  ========  ==============================================================  ================
  secret    ``password=…``/``api_key: …`` style assignments (the value),     ``[secret]``
            ``Bearer …`` tokens, JWTs, ``sk-…``/``ghp_…``/``AKIA…`` keys
  email     e-mail addresses                                                ``[email]``
  iban      IBANs (compact or in groups of four) that pass the mod-97 check ``[iban]``
  card      13-19 digit card numbers (spaces/hyphens allowed), Luhn-checked ``[card-number]``
  phone     ``+``/``00`` international numbers (7-15 digits), or numbers    ``[phone]``
            of 9-15 digits in at least three space/hyphen/bracket groups
  ========  ==============================================================  ================

  plus the adapter's own ``patterns`` (name, regular expression, replacement), applied first.

The checks (mod-97, Luhn, digit counts, no ISO dates) keep amounts, dates, invoice numbers and
version strings readable; what remains ambiguous errs towards redaction. A plain run of digits
without separators or a ``+`` is not treated as a phone number (it is as likely an id or amount).
Every replacement is counted by rule, so an export can say what it removed.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kernel.config.models import BUILTIN_REDACTIONS, ExportRedaction
from kernel.governance.redaction import DEFAULT_RULES, REDACTED, RedactionRules

__all__ = ["BUILTIN_RULES", "ExportRedactor", "TextRule"]


@dataclass(frozen=True)
class TextRule:
    """Replace what ``pattern`` matches; ``replace`` may keep part of a match or decline it (return it unchanged)."""

    name: str
    pattern: re.Pattern[str]
    replace: Callable[[re.Match[str]], str]


def _constant(text: str) -> Callable[[re.Match[str]], str]:
    return lambda _match: text


# -- secret -----------------------------------------------------------------------------------------

_SECRET_ASSIGNMENT = re.compile(
    r"(?i)\b((?:[a-z0-9]+[_-])*(?:password|passwd|pwd|secret|token|api[_-]?key|access[_-]?key|account[_-]?key|"
    r"sharedaccesskey|client[_-]?secret|private[_-]?key|sig))(\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&\"']+)"
)
_SECRET_TOKEN = re.compile(
    r"(?i:\bbearer\s+)[A-Za-z0-9\-._~+/]{8,}=*"
    r"|\beyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}"
    r"|\b(?:sk-[A-Za-z0-9_-]{16,}|ghp_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}|xox[abprs]-[A-Za-z0-9-]{10,}"
    r"|AKIA[0-9A-Z]{16})\b"
)


def _secret_assignment(match: re.Match[str]) -> str:
    return f"{match.group(1)}{match.group(2)}[secret]"


def _secret_token(match: re.Match[str]) -> str:
    return "Bearer [secret]" if match.group(0).lower().startswith("bearer") else "[secret]"


# -- email --------------------------------------------------------------------------------------------

_EMAIL = re.compile(r"(?<![\w.%+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b")


# -- iban -------------------------------------------------------------------------------------------

_IBAN = re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b")


def _iban_valid(compact: str) -> bool:
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    digits = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(digits) % 97 == 1


def _iban(match: re.Match[str]) -> str:
    """The longest run of whole groups from the start that is a valid IBAN (a trailing word such as
    'EUR' may have been swallowed by the pattern), the rest kept."""
    text = match.group(0)
    cuts = [len(text)] + [m.start() for m in re.finditer(" ", text)][::-1]
    for cut in cuts:
        if _iban_valid(text[:cut].replace(" ", "")):
            return "[iban]" + text[cut:]
    compact = text.replace(" ", "")
    for length in range(len(compact), 14, -1):  # compact form followed by more letters or digits
        if " " not in text and _iban_valid(compact[:length]):
            return "[iban]" + text[length:]
    return text


# -- card -------------------------------------------------------------------------------------------

_CARD = re.compile(r"(?<![\w-])\d(?:[ -]?\d){12,18}(?![\w-])")


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(match: re.Match[str]) -> str:
    digits = re.sub(r"\D", "", match.group(0))
    return "[card-number]" if 13 <= len(digits) <= 19 and _luhn(digits) else match.group(0)


# -- phone ------------------------------------------------------------------------------------------

_PHONE = re.compile(
    r"(?<![\w@/+.:-])"
    r"(?!\d{4}-\d{2}-\d{2})"  # an ISO date is not a phone number
    r"(?:\+\d{7,15}|(?:(?:\+|00)\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)?\d{1,5}(?:[ .-]\(?\d{1,5}\)?){0,5})"
    r"(?![\w@:]|[.,-]\d)"
)


def _phone(match: re.Match[str]) -> str:
    text = match.group(0)
    digits = re.sub(r"\D", "", text)
    international = text.startswith(("+", "00"))
    groups = len(re.findall(r"\d+", text))
    if international and 7 <= len(digits) <= 15 and (text.startswith("+") or groups > 1):
        return "[phone]"
    if not international and 9 <= len(digits) <= 15 and groups >= 3 and "." not in text:
        return "[phone]"
    return text


#: Built-in rules in the order they apply: secrets first, phone numbers (the loosest) last.
BUILTIN_RULES: dict[str, list[TextRule]] = {
    "secret": [TextRule("secret", _SECRET_ASSIGNMENT, _secret_assignment),
               TextRule("secret", _SECRET_TOKEN, _secret_token)],
    "email": [TextRule("email", _EMAIL, _constant("[email]"))],
    "iban": [TextRule("iban", _IBAN, _iban)],
    "card": [TextRule("card", _CARD, _card)],
    "phone": [TextRule("phone", _PHONE, _phone)],
}
assert set(BUILTIN_RULES) == set(BUILTIN_REDACTIONS)


class ExportRedactor:
    """Applies an adapter's redaction rules to text and to structured data, counting what it replaced."""

    def __init__(self, config: ExportRedaction | None = None) -> None:
        config = config or ExportRedaction()
        self.keys: RedactionRules = DEFAULT_RULES.with_patterns(*config.keys) if config.keys else DEFAULT_RULES
        self.rules: list[TextRule] = [
            TextRule(p.name, re.compile(p.pattern), _constant(p.replacement if p.replacement is not None else f"[{p.name}]"))
            for p in config.patterns
        ]
        for name in BUILTIN_RULES:
            if name in config.builtin:
                self.rules.extend(BUILTIN_RULES[name])
        self.counts: Counter[str] = Counter()

    def text(self, value: str) -> str:
        """``value`` with every text rule applied in order."""
        for rule in self.rules:
            value = rule.pattern.sub(lambda match, rule=rule: self._count(rule, match), value)
        return value

    def _count(self, rule: TextRule, match: re.Match[str]) -> str:
        replaced = rule.replace(match)
        if replaced != match.group(0):
            self.counts[rule.name] += 1
        return replaced

    def data(self, value: Any) -> Any:
        """A copy of JSON-like data: sensitive keys' values replaced, text rules on every string (keys too)."""
        if isinstance(value, Mapping):
            result = {}
            for key, item in value.items():
                if item is not None and self.keys.sensitive(key):
                    self.counts["key"] += 1
                    result[self.text(str(key))] = REDACTED
                else:
                    result[self.text(str(key))] = self.data(item)
            return result
        if isinstance(value, (list, tuple)):
            return [self.data(item) for item in value]
        if isinstance(value, str):
            return self.text(value)
        return value
