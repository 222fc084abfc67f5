"""Resolved secret values are masked in every log record, whoever logs them and however."""

from __future__ import annotations

import logging
import secrets

import pytest

from kernel.adapters.embedded_secrets import EnvironmentSecretStore
from kernel.governance import secret_values
from kernel.inference.port import InferenceError


async def test_a_secret_read_through_the_port_is_masked_in_log_messages_arguments_and_tracebacks(
        caplog: pytest.LogCaptureFixture) -> None:
    value = "kv-" + secrets.token_hex(12)
    assert await EnvironmentSecretStore({"BILLING_KEY": value}).get("billing-key") == value
    log = logging.getLogger("aos.test.somewhere")
    with caplog.at_level(logging.INFO):
        log.info("connecting with %s", value)
        log.warning(f"inline {value} in an f-string")
        try:
            raise RuntimeError(f"the server said: bad key {value}")
        except RuntimeError:
            log.exception("call failed")
    assert value not in caplog.text
    assert caplog.text.count("[redacted]") == 3, "the argument, the f-string, the traceback's exception line"
    assert "connecting with [redacted]" in caplog.text


def test_error_texts_built_from_foreign_answers_are_masked() -> None:
    value = "ep-" + secrets.token_hex(12)
    secret_values.remember(value)
    assert str(InferenceError(f"endpoint answered 401: key {value} rejected")) == \
        "endpoint answered 401: key [redacted] rejected"


def test_short_values_are_not_masked_as_that_would_garble_every_line(caplog: pytest.LogCaptureFixture) -> None:
    secret_values.remember("true")
    with caplog.at_level(logging.INFO):
        logging.getLogger("aos.test").info("enabled: true")
    assert "enabled: true" in caplog.text
