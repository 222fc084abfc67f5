"""Redaction rules for exported training data: secrets and personal data out, numbers that are not personal kept."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from kernel.config.models import BUILTIN_REDACTIONS, ExportRedaction
from kernel.ml.redaction import BUILTIN_RULES, ExportRedactor


@pytest.mark.parametrize(("text", "expected"), [
    ("Contact jane.doe@contoso.com today.", "Contact [email] today."),
    ("Call +49 30 1234 5678 or (555) 123-4567 or 555-123-4567.", "Call [phone] or [phone] or [phone]."),
    ("Also 0044 20 7946 0958 and +442079460958.", "Also [phone] and [phone]."),
    ("Pay DE89 3704 0044 0532 0130 00 EUR 1200", "Pay [iban] EUR 1200"),
    ("IBAN GB82WEST12345698765432.", "IBAN [iban]."),
    ("Card 4111 1111 1111 1111, also 5500-0000-0000-0004.", "Card [card-number], also [card-number]."),
    ("password=hunter2; db_password: 's3cr3t!'", "password=[secret]; db_password: [secret]"),
    ("Authorization: Bearer abcdefghijklmnop", "Authorization: Bearer [secret]"),
    ("key sk-abcdefghijklmnopqrstuv and AKIAABCDEFGHIJKLMNOP", "key [secret] and [secret]"),
])
def test_builtin_rules_replace_personal_data_and_secrets(text: str, expected: str) -> None:
    assert ExportRedactor().text(text) == expected


@pytest.mark.parametrize("text", [
    "Invoice INV-0042 for 1,250,000.00 EUR on 2026-11-21 10:05 (2026-11-21T10:05:00+00:00).",
    "Version 1.2.3 on host 192.168.100.200; order 123456789; amount 120000; PO 2026-0042.",
    "13-week forecast, 99.9% availability, 1 250 000 EUR, 10 000 000 USD.",
    "max_tokens: 1024, tokens: 20, a card-like 4111111111111112 that fails Luhn, DE00INVALID0000000.",
])
def test_amounts_dates_ids_and_versions_stay(text: str) -> None:
    redactor = ExportRedactor()
    assert redactor.text(text) == text
    assert not redactor.counts


def test_structured_data_redacts_sensitive_keys_and_text_and_counts() -> None:
    redactor = ExportRedactor()
    data = {"vendor": "Contoso", "contact": {"email": "ap@contoso.com", "Password": "x", "phone": None},
            "notes": ["call +1 202 555 0143"], "amount": 1200, "api_key": {"nested": "all of it"}}
    assert redactor.data(data) == {"vendor": "Contoso", "contact": {"email": "[email]", "Password": "[redacted]",
                                                                    "phone": None},
                                   "notes": ["call [phone]"], "amount": 1200, "api_key": "[redacted]"}
    assert redactor.counts == {"key": 2, "email": 1, "phone": 1}


def test_configured_rules_add_keys_and_patterns_and_choose_builtins() -> None:
    config = ExportRedaction.model_validate({
        "builtin": ["email"], "keys": ["^customer_ref$"],
        "patterns": [{"name": "ticket", "pattern": r"TCK-\d+"}, {"name": "person", "pattern": "Jane Doe",
                                                                 "replacement": "[name]"}]})
    redactor = ExportRedactor(config)
    assert redactor.text("Jane Doe (jane@x.io, +49 30 1234 5678) opened TCK-123") == \
        "[name] ([email], +49 30 1234 5678) opened [ticket]"
    assert redactor.data({"customer_ref": "C-1", "customer": "C-2"}) == {"customer_ref": "[redacted]", "customer": "C-2"}
    assert ExportRedactor(ExportRedaction(builtin=[])).text("a@b.io") == "a@b.io"


def test_config_rejects_unknown_builtins_and_bad_patterns() -> None:
    assert set(BUILTIN_RULES) == set(BUILTIN_REDACTIONS)
    with pytest.raises(ValidationError):
        ExportRedaction.model_validate({"builtin": ["ssn"]})
    with pytest.raises(ValidationError, match="not a valid regular expression"):
        ExportRedaction.model_validate({"patterns": [{"name": "x", "pattern": "(unclosed"}]})
