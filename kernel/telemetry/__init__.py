"""Observability: OpenTelemetry traces that follow an event across the apps, metrics per agent,
and logs that carry trace ids (see docs/observability.md).

    config.py     which exporters the settings select (Azure Monitor, OTLP, JSON lines)
    setup.py      the process's providers, configured on first use; ``capture`` for tests
    ids.py        traceparent <-> span context; the turn's derived span context; chosen span ids
    spans.py      span names, ``span`` (a child of an envelope's traceparent), ``stamp`` (outgoing envelopes)
    turns.py      the turn's span, emitted once by the archive activity, and its metrics
    metrics.py    the instruments: aos.turns, aos.turn.duration, aos.tokens, aos.tool_calls, aos.errors, aos.deadletters
    logs.py       trace ids on every log record; JSON lines with AOS_LOG_FORMAT=json
    http.py       the HTTP ingress span decorator
    jsonl.py      the console exporter (JSON lines) and reading its file back
    traces.py, cli.py   ``aos traces`` and ``aos trace``: traces from that file, as trees
"""

from __future__ import annotations

from kernel.telemetry.setup import (
           capture,
           configure,
           configure_local,
           current,
           ensure_configured,
           release,
)
from kernel.telemetry.spans import current_traceparent, span, stamp

__all__ = ["capture", "configure", "configure_local", "current", "current_traceparent", "ensure_configured",
           "release", "span", "stamp"]
