"""Metrics per agent, read with an InMemoryMetricReader: from turns and dead letters on the
embedded engine, and from archived turn records of every outcome."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from kernel import telemetry
from kernel.messages import Envelope
from kernel.ports import OutboundMessage
from kernel.telemetry.turns import record_turn
from tests.realm.platform_support import finished_turn, running, send_event, settle

AGENT = """
kind: agent
id: clerk
display_name: Clerk
purpose: Acknowledge ledger entries.
scope:
  in_scope: [ledger entries]
subscriptions:
  - event_types: ["ledger.*"]
"""


def points(reader: InMemoryMetricReader, name: str) -> list[tuple[dict[str, Any], Any]]:
    """(attributes, value) of every data point of metric ``name``; a histogram's value is (count, sum)."""
    found = []
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    for point in metric.data.data_points:
                        value = (point.count, point.sum) if hasattr(point, "bucket_counts") else point.value
                        found.append((dict(point.attributes), value))
    return found


def value(reader: InMemoryMetricReader, name: str, **attributes: str) -> Any:
    matching = [v for a, v in points(reader, name) if a == attributes]
    assert len(matching) == 1, f"{name}{attributes}: {points(reader, name)}"
    return matching[0]


async def test_turns_tokens_latency_and_dead_letters_are_counted_per_agent(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "clerk.yaml").write_text(AGENT)
    with telemetry.capture() as captured:
        async with running(tmp_path / "state", config_paths=str(configs)) as platform:
            first = await send_event(platform, "clerk", "ledger.entry", {"summary": "one"})
            second = await send_event(platform, "clerk", "ledger.entry", {"summary": "two"})
            records = [await finished_turn(platform, "clerk", sent["turn_id"]) for sent in (first, second)]
            await platform.host.send("agent-events", b"{not json", message_id="broken-1", to="clerk")
            await platform.host.send("agent-events", json.dumps({"source": "erp", "to": "clerk"}), message_id="broken-2",
                                     to="clerk")
            ghost = Envelope(type="ledger.entry", source="erp", to="ghost")
            await platform.host.send("agent-events", OutboundMessage.from_envelope(ghost).body, message_id=ghost.id,
                                     to="ghost")
            await settle(platform)
        reader = captured.metrics

    assert value(reader, "aos.turns", agent_id="clerk", outcome="replied") == 2
    count, total = value(reader, "aos.turn.duration", agent_id="clerk", outcome="replied")
    assert count == 2 and total >= 0
    prompt = sum(r["usage"]["prompt_tokens"] for r in records)
    completion = sum(r["usage"]["completion_tokens"] for r in records)
    assert prompt > 0 and value(reader, "aos.tokens", agent_id="clerk", kind="input") == prompt
    assert value(reader, "aos.tokens", agent_id="clerk", kind="output") == completion
    assert value(reader, "aos.deadletters", kind="malformed", source="agent-events/realm", agent_id="none") == 1
    assert value(reader, "aos.deadletters", kind="malformed", source="agent-events/realm", agent_id="clerk") == 1
    # an undeclared addressee is not an agent id (no made-up ids in the metric)
    assert value(reader, "aos.deadletters", kind="unknown-agent", source="agent-events/realm", agent_id="none") == 1
    assert points(reader, "aos.errors") == []


def _record(turn_id: str, **changes: Any) -> dict[str, Any]:
    record = {"turn_id": turn_id, "agent_id": "keeper", "outcome": "replied", "started": "2026-01-01T10:00:00+00:00",
              "finished": "2026-01-01T10:00:03+00:00", "event": {"id": turn_id, "type": "ledger.entry"},
              "usage": {"prompt_tokens": 100, "completion_tokens": 20}, "steps": []}
    return record | changes


def test_each_turn_is_counted_once_with_its_failures_by_kind() -> None:
    failing_steps = [
        {"kind": "model", "step": 0, "provider": "offline"},
        {"kind": "tool", "server": "scratch", "tool": "write_file", "result": {"is_error": True}},
        {"kind": "tool", "server": "everything", "tool": "echo", "result": {"is_error": False}},
        {"kind": "model", "step": 1, "error": "endpoint unreachable"},
    ]
    with telemetry.capture() as captured:
        record_turn(_record("t-1"))
        record_turn(_record("t-1"))  # the archive activity retried: counted once
        record_turn(_record("t-2", outcome="failed", error="model call failed: endpoint unreachable",
                            steps=failing_steps))
        record_turn(_record("t-3", outcome="declined", usage={"prompt_tokens": 0, "completion_tokens": 0}))
        reader = captured.metrics
        spans = captured.spans.get_finished_spans()

    assert value(reader, "aos.turns", agent_id="keeper", outcome="replied") == 1
    assert value(reader, "aos.turns", agent_id="keeper", outcome="failed") == 1
    assert value(reader, "aos.turns", agent_id="keeper", outcome="declined") == 1
    assert value(reader, "aos.tokens", agent_id="keeper", kind="input") == 200
    assert value(reader, "aos.errors", agent_id="keeper", kind="turn") == 1
    assert value(reader, "aos.errors", agent_id="keeper", kind="tool") == 1
    assert value(reader, "aos.errors", agent_id="keeper", kind="model") == 1
    assert value(reader, "aos.tool_calls", agent_id="keeper", server="scratch", tool="write_file", outcome="error") == 1
    assert value(reader, "aos.tool_calls", agent_id="keeper", server="everything", tool="echo", outcome="ok") == 1
    # the failed turn's span says why, and its duration runs from the turn's start to its archive
    [failed] = [s for s in spans if s.attributes.get("aos.turn_id") == "t-2"]
    assert failed.status.description == "model call failed: endpoint unreachable"
    assert json.dumps(dict(failed.attributes))  # plain attributes only
