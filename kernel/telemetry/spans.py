"""The platform's spans: their names, and how each hop starts one from the trace context it got.

Every hop that receives a message starts its span as a child of the envelope's ``traceparent``
(or of the HTTP ``traceparent`` header), and every hop that sends one rewrites the outgoing
envelope's ``traceparent`` to its own span (:func:`stamp`), so the next app's span is its
child and one trace follows an event across the apps:

    POST /api/agents/{agent_id}/events -> agent.wake -> agent.turn -> agent.model
                                                                    -> mcp.request -> mcp.gateway -> mcp.call
                                                                                                  -> mcp.response
                                                                    -> agent.publish -> agent.output -> agent.wake ...

A failure marks the span ERROR with its message redacted; spans never carry tool arguments,
results, prompts or replies.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
)

from kernel.telemetry.ids import format_traceparent, parse_traceparent
from kernel.telemetry.logs import scrub

if TYPE_CHECKING:
    from kernel.messages import Envelope

WAKE = "agent.wake"
TURN = "agent.turn"
ASSESS = "agent.assess"
MODEL = "agent.model"
TOOL = "agent.tool"
ARCHIVE = "agent.archive"
PUBLISH = "agent.publish"
TOOL_REQUEST = "mcp.request"
GATEWAY = "mcp.gateway"
MCP_CALL = "mcp.call"
TOOL_RESPONSE = "mcp.response"
OUTPUT = "agent.output"

#: ``parent=CURRENT``: the span is a child of whatever span is current (the default).
CURRENT: Any = object()
Attributes = Mapping[str, Any]


def tracer() -> trace.Tracer:
    """The configured tracer (configuring telemetry from the app settings on first use)."""
    from kernel.telemetry.setup import ensure_configured

    return ensure_configured().tracer


def parent_context(parent: str | SpanContext | None) -> Context:
    """An OpenTelemetry context whose current span is ``parent`` (a traceparent or a span context);
    an empty context for none, so the span starts a new trace."""
    context = parse_traceparent(parent) if isinstance(parent, str) or parent is None else parent
    if context is None or not context.is_valid:
        return Context()
    return trace.set_span_in_context(NonRecordingSpan(context), Context())


@contextlib.contextmanager
def span(name: str, *, kind: SpanKind = SpanKind.INTERNAL, parent: Any = CURRENT,
         attributes: Attributes | None = None, start_time: int | None = None) -> Iterator[Span]:
    """Run the block in a new current span. ``parent``: :data:`CURRENT`, a traceparent string, a
    span context, or ``None`` (a new trace). An exception marks the span failed and propagates."""
    context = None if parent is CURRENT else parent_context(parent)
    with tracer().start_as_current_span(name, context=context, kind=kind, attributes=clean(attributes),
                                        start_time=start_time, record_exception=False,
                                        set_status_on_exception=False) as current:
        try:
            yield current
        except BaseException as error:
            if not isinstance(error, GeneratorExit):
                fail(current, error)
            raise


def fail(current: Span, error: BaseException | str) -> None:
    """Mark ``current`` failed, with the error's type and (redacted) message."""
    if isinstance(error, BaseException):
        message = scrub(str(error).strip().split("\n")[0])[:500] or type(error).__name__
        current.add_event("exception", {"exception.type": type(error).__name__, "exception.message": message})
    else:
        message = scrub(error)[:500]
    current.set_status(Status(StatusCode.ERROR, message))


def clean(attributes: Attributes | None) -> dict[str, Any]:
    """Attributes OpenTelemetry accepts: ``None`` dropped, other non-scalars as text."""
    result: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if value is None:
            continue
        result[key] = value if isinstance(value, (str, bool, int, float)) else str(value)
    return result


def current_traceparent() -> str | None:
    """The traceparent of the current span (``None`` outside one, or when telemetry is off)."""
    return format_traceparent(trace.get_current_span().get_span_context())


def stamp(envelope: Envelope) -> Envelope:
    """The envelope with its traceparent set to the current span, so the receiver's span is its
    child; unchanged when there is no current span."""
    traceparent = current_traceparent()
    if traceparent is None or traceparent == envelope.traceparent:
        return envelope
    return envelope.model_copy(update={"traceparent": traceparent})


def messaging(destination: str, *, operation: str, message_id: str | None = None) -> dict[str, Any]:
    """OpenTelemetry's messaging attributes for a Service Bus topic."""
    return {"messaging.system": "servicebus", "messaging.destination.name": destination,
            "messaging.operation.type": operation, "messaging.message.id": message_id}
