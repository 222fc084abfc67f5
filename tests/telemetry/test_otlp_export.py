"""Spans, metrics and logs exported over OTLP/HTTP to a collector on loopback, decoded as it receives them."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import (
    ExportLogsServiceRequest,
)
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from kernel import telemetry
from kernel.telemetry.config import from_settings
from kernel.telemetry.ids import turn_span_context
from kernel.telemetry.spans import WAKE, span
from kernel.telemetry.turns import record_turn

TRACE = "0af7651916cd43dd8448eb211c80319c"
SENDER = "b7ad6b7169203331"


class Collector:
    """What an OTLP/HTTP collector received: decoded requests and their headers, by path."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []

    def traces(self) -> list[Any]:
        spans = []
        for path, _, body in self.requests:
            if path == "/v1/traces":
                request = ExportTraceServiceRequest.FromString(body)
                for resource_spans in request.resource_spans:
                    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
                    spans += [(service, s) for scope in resource_spans.scope_spans for s in scope.spans]
        return spans

    def logs(self) -> list[Any]:
        found = []
        for path, _, body in self.requests:
            if path == "/v1/logs":
                for resource_logs in ExportLogsServiceRequest.FromString(body).resource_logs:
                    found += [record for scope in resource_logs.scope_logs for record in scope.log_records]
        return found

    def metrics(self) -> dict[str, list[Any]]:
        found: dict[str, list[Any]] = {}
        for path, _, body in self.requests:
            if path == "/v1/metrics":
                for resource_metrics in ExportMetricsServiceRequest.FromString(body).resource_metrics:
                    for scope in resource_metrics.scope_metrics:
                        for metric in scope.metrics:
                            found.setdefault(metric.name, []).append(metric)
        return found


@pytest.fixture
def collector() -> Iterator[tuple[str, Collector]]:
    received = Collector()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def test_spans_and_metrics_reach_an_otlp_collector(collector: tuple[str, Collector],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    url, received = collector
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=collector-key")  # read by the exporter itself
    configured = telemetry.configure(from_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": url, "AOS_APP_ROLES": "realm"}))
    started = datetime.now(UTC) - timedelta(seconds=2)
    try:
        with span(WAKE, parent=f"00-{TRACE}-{SENDER}-01", attributes={"aos.event.id": "e-1"}):
            wake_traceparent = telemetry.current_traceparent()
        record_turn({"turn_id": "turn-keeper-1", "agent_id": "keeper", "outcome": "replied", "tool_calls": 1,
                     "started": started.isoformat(), "finished": started.isoformat(),
                     "event": {"id": "e-1", "type": "ledger.entry", "traceparent": wake_traceparent},
                     "usage": {"prompt_tokens": 120, "completion_tokens": 30},
                     "steps": [{"kind": "tool", "server": "everything", "tool": "echo", "result": {"is_error": False}}]})
    finally:
        telemetry.release(configured)  # flushes both pipelines

    spans = {s.name: (service, s) for service, s in received.traces()}
    assert set(spans) == {"agent.wake", "agent.turn"}
    service, wake_span = spans["agent.wake"]
    _, turn_span = spans["agent.turn"]
    assert service == "aos-realm"
    assert wake_span.trace_id.hex() == TRACE and wake_span.parent_span_id.hex() == SENDER
    assert turn_span.trace_id.hex() == TRACE and turn_span.parent_span_id == wake_span.span_id
    assert turn_span.span_id.hex() == f"{turn_span_context(wake_traceparent, 'turn-keeper-1').span_id:016x}"
    assert turn_span.start_time_unix_nano == int(started.timestamp() * 1e9)
    assert all(headers.get("x-api-key") == "collector-key" for _, headers, _ in received.requests)

    metrics = received.metrics()
    [turns] = metrics["aos.turns"]
    [point] = turns.sum.data_points
    assert point.as_int == 1
    assert {a.key: a.value.string_value for a in point.attributes} == {"agent_id": "keeper", "outcome": "replied"}
    tokens = {next(a.value.string_value for a in p.attributes if a.key == "kind"): p.as_int
              for p in metrics["aos.tokens"][0].sum.data_points}
    assert tokens == {"input": 120, "output": 30}
    [duration] = metrics["aos.turn.duration"][0].histogram.data_points
    assert duration.count == 1 and duration.sum >= 2.0
    [call] = metrics["aos.tool_calls"][0].sum.data_points
    assert {a.key: a.value.string_value for a in call.attributes}["tool"] == "echo"


def test_logs_reach_the_collector_in_their_trace_with_secrets_redacted(collector: tuple[str, Collector]) -> None:
    url, received = collector
    wake_log = logging.getLogger("aos.realm.wake")
    level = wake_log.level
    wake_log.setLevel(logging.INFO)
    configured = telemetry.configure(from_settings({"OTEL_EXPORTER_OTLP_ENDPOINT": url, "AOS_APP_ROLES": "realm",
                                                    "AOS_TELEMETRY_CONSOLE": "off"}))
    assert "logs as text, exported to OTLP" in configured.describe()
    try:
        with span(WAKE, parent=f"00-{TRACE}-{SENDER}-01"):
            wake_log.info("waking %s with api_key=%s", "keeper", "sk-live-123456")
            try:
                raise RuntimeError("endpoint refused Bearer abc.def.ghi")
            except RuntimeError:
                wake_log.exception("model call failed", extra={"aos.agent_id": "keeper", "aos.detail": "secret=hunter2"})
        wake_log.warning("outside any span")
    finally:
        telemetry.release(configured)
        wake_log.setLevel(level)
    logging.getLogger("aos.realm.wake").warning("after the release: not exported")

    records = {record.body.string_value: record for record in received.logs()}
    assert set(records) == {"waking keeper with api_key=***", "model call failed", "outside any span"}
    waking, failed, outside = (records[m] for m in ("waking keeper with api_key=***", "model call failed",
                                                    "outside any span"))
    assert waking.trace_id.hex() == TRACE and waking.span_id and waking.span_id.hex() != SENDER
    assert waking.severity_text == "INFO" and failed.severity_text == "ERROR" and outside.severity_text == "WARN"
    assert failed.span_id == waking.span_id and not outside.trace_id.strip(b"\0")
    attributes = {a.key: a.value.string_value for a in failed.attributes}
    assert attributes["aos.agent_id"] == "keeper" and attributes["aos.detail"] == "secret=***"
    assert attributes["exception.type"] == "RuntimeError"
    assert attributes["exception.message"] == "endpoint refused Bearer ***"
    assert "Traceback" in attributes["exception.stacktrace"] and "abc.def.ghi" not in attributes["exception.stacktrace"]
    assert "trace_id" not in attributes and "span_id" not in attributes
    everything = b"".join(body for _, _, body in received.requests)
    assert b"sk-live-123456" not in everything and b"hunter2" not in everything and b"abc.def.ghi" not in everything
