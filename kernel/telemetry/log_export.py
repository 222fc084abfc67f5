"""Log export: Python log records as OpenTelemetry logs, secrets redacted, to OTLP or Azure Monitor.

Each record is exported with the trace and span it was written in (the collector or Application
Insights joins it to the turn's trace). What leaves the process passes :func:`scrub` first, as the
JSON console lines do: the message, the exception's message and stack trace, and any string
attribute passed with ``extra=``. The loggers' own levels decide what is exported; records of the
export pipeline itself (``opentelemetry.*`` loggers) are not, so a collector that is down does not
feed the queue it cannot drain.

Imported only when an exporter is configured: the SDK's logs module is not paid for otherwise.
"""

from __future__ import annotations

import copy
import logging
import traceback
from typing import Any

from opentelemetry.instrumentation.logging.handler import LoggingHandler

from kernel.telemetry.logs import scrub

#: Loggers whose records describe the export pipeline, never exported through it.
_PIPELINE_LOGGERS = ("opentelemetry",)
#: Attributes the platform's record factory adds to every record; the exported record carries
#: its trace context natively, so these would only repeat it.
_CORRELATION_ATTRIBUTES = ("trace_id", "span_id")


class RedactingLoggingHandler(LoggingHandler):
    """OpenTelemetry's logging handler, exporting a redacted copy of each record."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith(_PIPELINE_LOGGERS):
            return
        super().emit(redacted(record))


def redacted(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` with its message formatted and scrubbed, its exception as scrubbed
    ``exception.*`` attributes, and its string extras scrubbed; ``record`` itself is unchanged
    (other handlers see it as it was)."""
    clean = copy.copy(record)
    clean.msg, clean.args = scrub(record.getMessage()), None
    for name in _CORRELATION_ATTRIBUTES:
        clean.__dict__.pop(name, None)
    for name, value in list(clean.__dict__.items()):
        if isinstance(value, str) and name not in ("msg", "name", "levelname", "pathname", "filename", "module",
                                                   "funcName", "processName", "threadName", "taskName"):
            clean.__dict__[name] = scrub(value)
    if record.exc_info:
        kind, error, trace = record.exc_info
        clean.exc_info, clean.exc_text = None, None
        if kind is not None:
            clean.__dict__["exception.type"] = kind.__name__
        if error is not None:
            clean.__dict__["exception.message"] = scrub(str(error))
        if trace is not None:
            clean.__dict__["exception.stacktrace"] = scrub("".join(traceback.format_exception(kind, error, trace)))
    return clean


def otlp_log_processor(endpoint: str) -> Any:
    """A batching processor that sends logs to ``<endpoint>/v1/logs`` (OTLP/HTTP protobuf; headers
    from ``OTEL_EXPORTER_OTLP_HEADERS``, read by the exporter)."""
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.sdk._logs.export import BatchLogRecordProcessor

    return BatchLogRecordProcessor(OTLPLogExporter(endpoint=f"{endpoint}/v1/logs"))


def logger_provider(resource: Any) -> Any:
    """An SDK logger provider for ``resource`` (its processors are added by the caller)."""
    from opentelemetry.sdk._logs import LoggerProvider

    return LoggerProvider(resource=resource)


def attach(provider: Any) -> RedactingLoggingHandler:
    """Export the root logger's records through ``provider``, replacing any unredacting
    OpenTelemetry handler already there (the Azure Monitor distro adds one)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if isinstance(handler, LoggingHandler) and not isinstance(handler, RedactingLoggingHandler):
            root.removeHandler(handler)
    handler = RedactingLoggingHandler(logger_provider=provider)
    root.addHandler(handler)
    return handler


def detach(handler: logging.Handler | None) -> None:
    """Stop exporting through ``handler`` (a platform shut down; the next one attaches its own)."""
    if handler is not None:
        logging.getLogger().removeHandler(handler)
