"""The turn's span and metrics, from outside the orchestration (which replays, so holds no span).

The turn's span context is derived (``ids.turn_span_context``) from the event's traceparent and
the turn id, so each of the turn's activities parents its span to the turn without asking anyone.
When the turn is archived, :func:`record_turn` emits the ``agent.turn`` span itself — with that
very span id, the turn's start time and the archive time as its end — and counts the turn's
metrics, once per turn.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from opentelemetry.trace import SpanContext, SpanKind

from kernel.telemetry.ids import chosen_ids, parse_traceparent, turn_span_context
from kernel.telemetry.logs import scrub
from kernel.telemetry.setup import ensure_configured
from kernel.telemetry.spans import TURN, clean, fail, parent_context


def turn_context(event_traceparent: str | None, turn_id: str) -> SpanContext:
    """The span context of turn ``turn_id`` of an event that came with ``event_traceparent``."""
    return turn_span_context(event_traceparent, turn_id)


def record_turn(record: Mapping[str, Any], *, ended: datetime | None = None) -> None:
    """Emit the turn's span and count its metrics (``realm_of_agents.turn`` record shape)."""
    telemetry = ensure_configured()
    ended = ended or datetime.now(UTC)
    started = _time(record.get("started")) or ended
    ended = max(ended, started)
    turn_id = str(record["turn_id"])
    event = record.get("event") or {}
    traceparent = event.get("traceparent")
    derived = turn_span_context(traceparent, turn_id)
    usage = record.get("usage") or {}
    attributes = clean({
        "aos.agent_id": record.get("agent_id"), "aos.turn_id": turn_id, "aos.event.id": event.get("id"),
        "aos.event.type": event.get("type"), "aos.outcome": record.get("outcome"),
        "aos.tool_calls": record.get("tool_calls"), "aos.provider": record.get("provider"),
        "aos.config_version": record.get("config_version"),
        "gen_ai.usage.input_tokens": usage.get("prompt_tokens"), "gen_ai.usage.output_tokens": usage.get("completion_tokens"),
    })
    incoming = parse_traceparent(traceparent)
    with chosen_ids(derived.span_id, None if incoming else derived.trace_id):
        span = telemetry.tracer.start_span(TURN, context=parent_context(incoming), kind=SpanKind.INTERNAL,
                                           attributes=attributes, start_time=_nanoseconds(started))
    if record.get("outcome") == "failed":
        fail(span, scrub(str(record.get("error") or "the turn failed")))
    span.end(end_time=_nanoseconds(ended))
    telemetry.instruments.record_turn(record, (ended - started).total_seconds())


def _time(value: Any) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _nanoseconds(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
