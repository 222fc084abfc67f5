"""W3C traceparent text <-> span contexts, and the span ids the platform chooses itself.

A turn is a Durable orchestration: it replays, so it can never hold a live span. Its span context
is instead *derived* (a pure function of the incoming traceparent and the turn id), so every
activity of the turn, on any instance, computes the same parent; the archive activity then emits
the ``agent.turn`` span with exactly that span id (:func:`chosen_ids` tells the platform's id
generator which ids to hand out next, for the current context only).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from opentelemetry.trace import (
    INVALID_SPAN_ID,
    INVALID_TRACE_ID,
    SpanContext,
    TraceFlags,
)

_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


def parse_traceparent(value: str | None) -> SpanContext | None:
    """The remote span context a traceparent names; ``None`` for none or an invalid one
    (all-zero ids, version ff), as W3C says a receiver must treat those."""
    if not value or not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip())
    if match is None or match.group(1) == "ff":
        return None
    trace_id, span_id = int(match.group(2), 16), int(match.group(3), 16)
    if trace_id == INVALID_TRACE_ID or span_id == INVALID_SPAN_ID:
        return None
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=TraceFlags(int(match.group(4), 16) & 0x01))


def format_traceparent(context: SpanContext | None) -> str | None:
    """``00-<trace id>-<span id>-<flags>``; ``None`` for an invalid context (nothing to propagate)."""
    if context is None or not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags) & 0x01:02x}"


def _digest(text: str, hex_chars: int) -> int:
    value = int(hashlib.sha256(text.encode("utf-8")).hexdigest()[:hex_chars], 16)
    return value or 1  # zero ids are invalid


def turn_span_context(traceparent: str | None, turn_id: str) -> SpanContext:
    """The turn's span context: its trace is the incoming one (or one derived from the turn id when
    the event came without trace context); its span id is derived from the trace and the turn id."""
    incoming = parse_traceparent(traceparent)
    trace_id = incoming.trace_id if incoming else _digest(f"aos-trace\n{turn_id}", 32)
    flags = incoming.trace_flags if incoming else TraceFlags(TraceFlags.SAMPLED)
    span_id = _digest(f"aos-turn\n{trace_id:032x}\n{turn_id}", 16)
    return SpanContext(trace_id, span_id, is_remote=True, trace_flags=flags)


@dataclass(frozen=True)
class ChosenIds:
    span_id: int
    trace_id: int | None = None


_chosen: contextvars.ContextVar[ChosenIds | None] = contextvars.ContextVar("aos_chosen_span_ids", default=None)


@contextlib.contextmanager
def chosen_ids(span_id: int, trace_id: int | None = None) -> Iterator[None]:
    """Within the block, the platform's id generator returns these ids (start exactly one span in it)."""
    token = _chosen.set(ChosenIds(span_id, trace_id))
    try:
        yield
    finally:
        _chosen.reset(token)


def chosen() -> ChosenIds | None:
    """The ids :func:`chosen_ids` set for the current context, if any."""
    return _chosen.get()
