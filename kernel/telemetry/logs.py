"""Log correlation: every log record carries the current trace and span ids; JSON lines on request.

The ids are added by a log-record factory (not a handler filter), so every handler sees them,
whoever configured it: ``%(trace_id)s`` works in any format string. ``AOS_LOG_FORMAT=json`` puts
:class:`JsonFormatter` on the root logger's handlers: one object per line with time, level,
logger, message, trace_id, span_id (and the exception, if any), for log queries. Messages and
exception texts pass through the platform's secret redaction (account keys, SAS signatures,
passwords, client secrets, api keys, bearer tokens) first.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace

from kernel.adapters import redact

_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9\-._~+/]+=*")
_KEYED = re.compile(r"(?i)\b((?:api[_-]?key|access[_-]?token|token|secret)\s*[=:]\s*)[^;&\s\"',]+")
_installed: Callable[..., logging.LogRecord] | None = None
_lock = threading.Lock()


def scrub(text: str) -> str:
    """``text`` with secrets the platform can recognise by shape replaced by ``***``."""
    return _KEYED.sub(lambda m: f"{m.group(1)}***", _BEARER.sub(lambda m: f"{m.group(1)} ***", redact(text)))


def install_record_factory() -> None:
    """Give every ``LogRecord`` ``trace_id`` and ``span_id`` (hex; empty outside a span). Idempotent."""
    global _installed
    with _lock:
        if _installed is not None:
            return
        previous = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            context = trace.get_current_span().get_span_context()
            if context.is_valid:
                record.trace_id, record.span_id = f"{context.trace_id:032x}", f"{context.span_id:016x}"
            else:
                record.trace_id = record.span_id = ""
            return record

        logging.setLogRecordFactory(factory)
        _installed = factory


class JsonFormatter(logging.Formatter):
    """One JSON object per record, secrets redacted."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": scrub(record.getMessage()),
            "trace_id": getattr(record, "trace_id", "") or None, "span_id": getattr(record, "span_id", "") or None,
        }
        if record.exc_info:
            entry["exception"] = scrub(self.formatException(record.exc_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(log_format: str) -> None:
    """Correlate logs with traces; with ``json``, format the root logger's handlers as JSON lines
    (adding a stderr handler when there is none)."""
    install_record_factory()
    if log_format != "json":
        return
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(logging.StreamHandler(sys.stderr))
    for handler in root.handlers:
        if not isinstance(handler.formatter, JsonFormatter) and _formats_text(handler):
            handler.setFormatter(JsonFormatter())


def _formats_text(handler: logging.Handler) -> bool:
    """Handlers that write text lines (not exporters such as OpenTelemetry's LoggingHandler)."""
    return isinstance(handler, logging.StreamHandler)
