"""The console exporter: one compact JSON object per span (and per metrics export) per line.

Lines rather than the SDK's pretty-printed JSON, so a terminal is not flooded, a file can be
appended to by several processes, and ``aos traces`` / ``aos trace`` can read it back. A file
destination is rotated once it passes :data:`MAX_FILE_BYTES` (one previous file, ``.1``, is kept).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from opentelemetry.sdk.metrics.export import ConsoleMetricExporter, MetricsData
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

MAX_FILE_BYTES = 50 * 1024 * 1024


class JsonLinesSink:
    """A text destination taking whole lines: stdout, stderr, or a file opened for appending."""

    def __init__(self, destination: str | Path) -> None:
        self._lock = threading.Lock()
        self._stream: IO[str] | None = None
        self.path: Path | None = None
        if destination in ("stdout", "stderr"):
            self._stream = sys.stdout if destination == "stdout" else sys.stderr
        else:
            self.path = Path(destination)
            self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(self, text: str) -> int:
        with self._lock:
            if self.path is not None:
                self._rotate_if_full()
                with self.path.open("a", encoding="utf-8") as file:  # one append per batch: safe beside other writers
                    file.write(text)
            elif self._stream is not None:
                self._stream.write(text)
                self._stream.flush()
        return len(text)

    def flush(self) -> None:
        """Every write is flushed already (the exporters call this)."""

    def _rotate_if_full(self) -> None:
        assert self.path is not None
        try:
            if self.path.stat().st_size >= MAX_FILE_BYTES:
                self.path.replace(self.path.with_name(self.path.name + ".1"))
        except FileNotFoundError:
            pass


def _iso(nanoseconds: int | None) -> str | None:
    if nanoseconds is None:
        return None
    return datetime.fromtimestamp(nanoseconds / 1e9, UTC).isoformat(timespec="microseconds")


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """What one line says about a span."""
    context = span.get_span_context()
    assert context is not None
    duration = (span.end_time - span.start_time) / 1e6 if span.end_time and span.start_time else None
    record: dict[str, Any] = {
        "trace_id": f"{context.trace_id:032x}", "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent else None,
        "name": span.name, "kind": span.kind.name, "start": _iso(span.start_time), "end": _iso(span.end_time),
        "duration_ms": round(duration, 3) if duration is not None else None,
        "status": span.status.status_code.name,
        "service": span.resource.attributes.get("service.name"),
        "attributes": dict(span.attributes or {}),
    }
    if span.status.description:
        record["status_message"] = span.status.description
    if span.events:
        record["events"] = [{"name": e.name, "time": _iso(e.timestamp), "attributes": dict(e.attributes or {})}
                            for e in span.events]
    return record


class JsonLinesSpanExporter(SpanExporter):
    """Spans as JSON lines on a :class:`JsonLinesSink`."""

    def __init__(self, sink: JsonLinesSink) -> None:
        self._sink = sink

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        text = "".join(json.dumps(span_record(span), separators=(",", ":"), default=str) + "\n" for span in spans)
        if text:
            try:
                self._sink.write(text)
            except OSError:
                return SpanExportResult.FAILURE
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def metrics_exporter(sink: JsonLinesSink) -> ConsoleMetricExporter:
    """Metrics exports as one JSON line each (the SDK's metrics JSON, compact)."""

    def line(data: MetricsData) -> str:
        return json.dumps({"metrics": json.loads(data.to_json(indent=None))}, separators=(",", ":")) + "\n"

    return ConsoleMetricExporter(out=sink, formatter=line)  # type: ignore[arg-type]


def metrics_path(spans_file: Path) -> Path:
    """Where metrics go when spans go to ``spans_file``: ``metrics.jsonl`` beside it."""
    return spans_file.with_name("metrics.jsonl")


def read_spans(path: Path) -> Iterator[dict[str, Any]]:
    """Span records from a JSON-lines file and its rotated predecessor (older first); other lines are skipped."""
    for source in (path.with_name(path.name + ".1"), path):
        if not source.is_file():
            continue
        with source.open(encoding="utf-8", errors="replace") as file:
            for line in file:
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(record, dict) and "span_id" in record and "trace_id" in record:
                    yield record
