"""Azure Monitor: with APPLICATIONINSIGHTS_CONNECTION_STRING set, spans, logs and metrics reach the
ingestion endpoint (a loopback server here) through azure-monitor-opentelemetry, imported only then.
Runs in a fresh process: the distro sets OpenTelemetry's once-per-process global providers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from kernel.settings import APP_ROOT
from kernel.telemetry.ids import turn_span_context

TRACE = "5b8efff798038103d269b633813fc60c"
CALLER = "eee19b7ec3c1b174"


def test_spans_logs_and_metrics_reach_application_insights(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("APPLICATIONINSIGHTS_", "OTEL_", "AOS_"))}
    environment.update({"AOS_APP_ROLES": "realm", "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
                        "TMPDIR": str(tmp_path), "PYTHONPATH": str(APP_ROOT)})
    done = subprocess.run([sys.executable, str(Path(__file__).with_name("azure_monitor_probe.py")), TRACE, CALLER],
                          capture_output=True, text=True, timeout=120, env=environment, cwd=tmp_path, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])

    assert report["imported_without"] is False, "the distro must not be imported without a connection string"
    assert report["imported_with"] is True
    assert "Azure Monitor" in report["description"] and "a05f" not in report["description"]
    items = report["items"]
    by_type: dict[str, list[dict]] = {}
    for item in items:
        by_type.setdefault(item["data"]["baseType"], []).append(item)
        assert item["tags"]["ai.cloud.role"] == "aos-realm"

    spans = {i["data"]["baseData"]["name"]: i for i in by_type.get("RemoteDependencyData", [])}
    assert {"agent.wake", "agent.turn"} <= set(spans), sorted(spans)
    wake, turn = spans["agent.wake"], spans["agent.turn"]
    assert wake["tags"]["ai.operation.id"] == TRACE and wake["tags"]["ai.operation.parentId"] == CALLER
    assert turn["tags"]["ai.operation.id"] == TRACE
    assert turn["tags"]["ai.operation.parentId"] == wake["data"]["baseData"]["id"]
    assert turn["data"]["baseData"]["id"] == f"{turn_span_context(report['wake_traceparent'], 'turn-keeper-7').span_id:016x}"
    assert turn["data"]["baseData"]["properties"]["aos.agent_id"] == "keeper"

    [log] = [i for i in by_type.get("MessageData", []) if i["data"]["baseData"]["message"] == "waking keeper for e-7"]
    assert log["tags"]["ai.operation.id"] == TRACE and log["tags"]["ai.operation.parentId"] == wake["data"]["baseData"]["id"]
    messages = [i["data"]["baseData"]["message"] for i in by_type.get("MessageData", [])]
    assert "endpoint answered 401 for api_key=***" in messages  # the platform's handler, which redacts
    assert "sk-probe-secret" not in json.dumps(items)

    metric_names = {m["name"] for i in by_type.get("MetricData", []) for m in i["data"]["baseData"]["metrics"]}
    assert {"aos.turns", "aos.tokens", "aos.turn.duration"} <= metric_names
