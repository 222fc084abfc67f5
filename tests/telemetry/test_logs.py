"""Logs carry the current trace and span ids; AOS_LOG_FORMAT=json writes one redacted JSON object per line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from kernel import telemetry
from kernel.telemetry.logs import (
    JsonFormatter,
    configure_logging,
    install_record_factory,
)
from kernel.telemetry.spans import span

SECRET = "c2VjcmV0LWFjY291bnQta2V5LXZhbHVl"


@pytest.fixture
def lines() -> Iterator[io.StringIO]:
    """A text handler on logger aos.test, formatted as JSON."""
    install_record_factory()
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("aos.test")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        logger.removeHandler(handler)


def _entries(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_log_line_in_a_span_names_its_trace_and_span(lines: io.StringIO) -> None:
    log = logging.getLogger("aos.test")
    with telemetry.capture():
        log.info("before any span")
        with span("agent.wake", parent="00-11111111111111111111111111111111-2222222222222222-01") as outer:
            log.info("waking %s", "keeper")
            with span("agent.turn") as inner:
                log.warning("inside the turn")
    before, waking, turn = _entries(lines)
    assert before["trace_id"] is None and before["span_id"] is None
    assert waking["message"] == "waking keeper" and waking["level"] == "INFO" and waking["logger"] == "aos.test"
    assert waking["trace_id"] == "1" * 32 and waking["span_id"] == f"{outer.get_span_context().span_id:016x}"
    assert turn["trace_id"] == "1" * 32 and turn["span_id"] == f"{inner.get_span_context().span_id:016x}"


def test_secrets_are_redacted_from_messages_and_exceptions(lines: io.StringIO) -> None:
    log = logging.getLogger("aos.test")
    try:
        raise RuntimeError(f"cannot connect: AccountName=dev;AccountKey={SECRET};EndpointSuffix=x")
    except RuntimeError:
        log.exception("storage failed with Authorization: Bearer eyJhbGciOi.%s.sig", SECRET)
    [entry] = _entries(lines)
    assert SECRET not in lines.getvalue()
    assert "AccountKey=***" in entry["exception"] and "Bearer ***" in entry["message"]


def test_json_format_reformats_the_root_handlers_and_text_leaves_them(monkeypatch: pytest.MonkeyPatch) -> None:
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    text = logging.Formatter("%(levelname)s %(message)s [%(trace_id)s]")
    handler.setFormatter(text)
    monkeypatch.setattr(root, "handlers", [handler])
    configure_logging("text")
    assert handler.formatter is text
    logging.getLogger("aos.test").error("plain")  # %(trace_id)s is known to every record
    assert handler.stream.getvalue() == "ERROR plain []\n"
    configure_logging("json")
    assert isinstance(handler.formatter, JsonFormatter)
