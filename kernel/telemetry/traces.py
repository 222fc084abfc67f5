"""Traces from the JSON-lines span file, as summaries and indented trees (``aos traces``, ``aos trace``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

#: Attributes worth showing beside a span's name in a tree, in this order.
SHOWN = ("aos.agent_id", "aos.event.type", "aos.mcp.op", "aos.mcp.server", "aos.mcp.tool", "aos.tool.name",
         "aos.step", "aos.provider", "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "aos.outcome",
         "aos.route", "http.response.status_code")


@dataclass
class Trace:
    """The spans of one trace id, as read (a span can appear twice if it was exported twice)."""

    trace_id: str
    spans: list[dict[str, Any]] = field(default_factory=list)

    @property
    def start(self) -> str:
        return min((s.get("start") or "" for s in self.spans), default="")

    @property
    def end(self) -> str:
        return max((s.get("end") or "" for s in self.spans), default="")

    @property
    def roots(self) -> list[dict[str, Any]]:
        """Spans whose parent is not in the file (the caller's span, or none)."""
        ids = {s["span_id"] for s in self.spans}
        return sorted((s for s in self.spans if s.get("parent_id") not in ids), key=lambda s: s.get("start") or "")

    @property
    def agents(self) -> list[str]:
        return sorted({str(s["attributes"]["aos.agent_id"]) for s in self.spans
                       if (s.get("attributes") or {}).get("aos.agent_id")})

    @property
    def errors(self) -> int:
        return sum(1 for s in self.spans if s.get("status") == "ERROR")


def group(records: Iterable[dict[str, Any]]) -> dict[str, Trace]:
    """Span records by trace id; a span exported twice (an at-least-once activity) is kept once."""
    traces: dict[str, Trace] = {}
    seen: set[tuple[str, str]] = set()
    for record in records:
        key = (record["trace_id"], record["span_id"])
        if key in seen:
            continue
        seen.add(key)
        traces.setdefault(record["trace_id"], Trace(record["trace_id"])).spans.append(record)
    return traces


def find(traces: dict[str, Trace], wanted: str) -> list[Trace]:
    """Traces by full id, unique prefix, or a turn id / event id that one of their spans names."""
    wanted = wanted.strip().lower()
    if wanted in traces:
        return [traces[wanted]]
    by_prefix = [t for trace_id, t in traces.items() if len(wanted) >= 4 and trace_id.startswith(wanted)]
    if by_prefix:
        return by_prefix
    return [t for t in traces.values() if any(
        str((s.get("attributes") or {}).get(key, "")).lower() == wanted
        for s in t.spans for key in ("aos.turn_id", "aos.event.id"))]


def summary_line(trace: Trace) -> str:
    root = trace.roots[0] if trace.roots else {}
    return (f"{trace.start[:23]:<23}  {trace.trace_id}  {len(trace.spans):>3} spans  "
            f"{_duration(trace.start, trace.end):>9}  {root.get('name', '?')}"
            + (f"  [{', '.join(trace.agents)}]" if trace.agents else "")
            + (f"  {trace.errors} error(s)" if trace.errors else ""))


def tree_lines(trace: Trace) -> list[str]:
    """The trace as an indented tree, children in start order, with times relative to its start."""
    children: dict[str | None, list[dict[str, Any]]] = defaultdict(list)
    ids = {s["span_id"] for s in trace.spans}
    for span in trace.spans:
        parent = span.get("parent_id")
        children[parent if parent in ids else None].append(span)
    for group_ in children.values():
        group_.sort(key=lambda s: s.get("start") or "")
    lines = [f"trace {trace.trace_id}  ({len(trace.spans)} spans, {_duration(trace.start, trace.end)})"]

    def walk(span: dict[str, Any], depth: int) -> None:
        attributes = span.get("attributes") or {}
        shown = "  ".join(f"{key.split('.')[-1]}={attributes[key]}" for key in SHOWN if key in attributes)
        status = f"  ERROR: {span.get('status_message') or ''}".rstrip() if span.get("status") == "ERROR" else ""
        offset = _duration(trace.start, span.get("start") or trace.start)
        lines.append(f"{'  ' * depth}{span['name']}  [{span.get('kind', '').lower()}, {span.get('service') or '-'}]  "
                     f"+{offset} {_ms(span.get('duration_ms'))}" + (f"  {shown}" if shown else "") + status)
        for child in children.get(span["span_id"], []):
            walk(child, depth + 1)

    for root in children.get(None, []):
        walk(root, 1)
    return lines


def _ms(value: Any) -> str:
    return f"{value:.1f} ms" if isinstance(value, (int, float)) else "?"


def _duration(start: str, end: str) -> str:
    from datetime import datetime

    try:
        seconds = (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()
    except ValueError:
        return "?"
    return f"{seconds * 1000:.1f} ms" if seconds < 10 else f"{seconds:.1f} s"
