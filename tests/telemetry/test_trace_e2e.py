"""One trace follows an event through the platform: the embedded engine runs the unmodified
function_app.py (all three apps), the turn calls the `everything` MCP server's echo tool through
the gateway over Service Bus, and every span is collected in memory."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from kernel import telemetry
from kernel.telemetry import spans as names
from kernel.telemetry.ids import turn_span_context
from tests.realm.platform_support import (
    finished_turn,
    requires_mcp_servers,
    running,
    settle,
)

AGENT = """
kind: agent
id: echoer
display_name: Echoer
purpose: Echo ledger entries back through the everything server, to show a trace end to end.
scope:
  in_scope: [ledger entries]
tools:
  - server: everything
    tools: [echo]
subscriptions:
  - event_types: ["ledger.*"]
"""
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"


def _configs(tmp_path: Path) -> str:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "echoer.yaml").write_text(AGENT)
    (configs / "everything.yaml").write_text(json.dumps({
        "kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node",
        "args": ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]}))
    return str(configs)


def _one(spans: list[Any], name: str, **attributes: Any) -> Any:
    found = [s for s in spans if s.name == name and all(s.attributes.get(k) == v for k, v in attributes.items())]
    assert len(found) == 1, f"expected one {name} span with {attributes}, found {len(found)}: " + ", ".join(
        f"{s.name}{dict(s.attributes)}" for s in spans)
    return found[0]


def _parent(child: Any, parent: Any) -> None:
    assert child.parent is not None, f"{child.name} has no parent; expected {parent.name}"
    assert child.parent.span_id == parent.context.span_id, (
        f"{child.name}'s parent is {child.parent.span_id:016x}, not {parent.name} ({parent.context.span_id:016x})")


@requires_mcp_servers
async def test_one_trace_follows_an_event_from_http_through_the_gateway_and_back(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="aos")
    with telemetry.capture() as captured:
        async with running(tmp_path / "state", config_paths=_configs(tmp_path)) as platform:
            sent = await platform.host.http("POST", "/api/agents/echoer/events", json={
                "type": "ledger.entry", "data": {"summary": "an entry", "tool_call": {
                    "server": "everything", "tool": "echo", "arguments": {"message": "traced"}}}},
                headers={"x-functions-key": platform.key, "traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"})
            assert sent.status == 202, sent.body
            turn_id = json.loads(sent.body)["turn_id"]
            record = await finished_turn(platform, "echoer", turn_id)
            await settle(platform)
        spans = captured.spans.get_finished_spans()

    assert record["outcome"] == "replied", record
    ours = [s for s in spans if s.context.trace_id == int(CALLER_TRACE, 16)]
    assert {s.name for s in spans if s.context.trace_id != int(CALLER_TRACE, 16)} <= {names.WAKE}, \
        "only unrelated wakes (config sync has none) may be in another trace"

    http = _one(ours, "POST /api/agents/{agent_id}/events")
    wake = _one(ours, names.WAKE)
    turn = _one(ours, names.TURN)
    call_request = _one(ours, names.TOOL_REQUEST, **{"aos.mcp.op": "call_tool"})
    gateway = _one(ours, names.GATEWAY, **{"aos.mcp.op": "call_tool"})
    mcp_call = _one(ours, names.MCP_CALL, **{"aos.mcp.op": "call_tool"})
    response = _one(ours, names.TOOL_RESPONSE, **{"aos.mcp.call_id": call_request.attributes["aos.mcp.call_id"]})
    models = [s for s in ours if s.name == names.MODEL]
    publish = _one(ours, names.PUBLISH)
    output = _one(ours, names.OUTPUT)

    # HTTP (a child of the caller's span) -> wake -> turn -> tool request -> gateway -> MCP call, response
    assert http.kind == SpanKind.SERVER and http.parent.span_id == int(CALLER_SPAN, 16)
    assert http.attributes["http.response.status_code"] == 202
    _parent(wake, http)
    assert wake.kind == SpanKind.CONSUMER
    _parent(turn, wake)
    _parent(call_request, turn)
    assert call_request.kind == SpanKind.PRODUCER and call_request.attributes["aos.mcp.tool"] == "echo"
    _parent(gateway, call_request)
    assert gateway.kind == SpanKind.CONSUMER
    _parent(mcp_call, gateway)
    assert mcp_call.kind == SpanKind.CLIENT and mcp_call.attributes["aos.mcp.server"] == "everything"
    _parent(response, gateway)
    assert response.kind == SpanKind.CONSUMER and response.attributes["aos.turn_id"] == turn_id
    # the tool list the turn asked for first took the same road
    _parent(_one(ours, names.GATEWAY, **{"aos.mcp.op": "list_tools"}),
            _one(ours, names.TOOL_REQUEST, **{"aos.mcp.op": "list_tools"}))
    # turn -> model calls (the first asked for the tool, the second answered), turn -> publish -> outputs router
    assert len(models) == 2 and all(m.kind == SpanKind.CLIENT for m in models)
    for model in models:
        _parent(model, turn)
    assert sorted(m.attributes["aos.step"] for m in models) == [0, 1]
    assert models[0].attributes["aos.provider"] == "offline"
    _parent(publish, turn)
    _parent(output, publish)
    assert output.attributes["aos.route"] == "terminal"

    # the turn's span: emitted once, by the archive, with the derived span id and the turn's facts
    assert [s.name for s in spans].count(names.TURN) == 1
    assert turn.context.span_id == turn_span_context(record["event"]["traceparent"], turn_id).span_id
    assert turn.attributes["aos.outcome"] == "replied" and turn.attributes["aos.tool_calls"] == 1
    assert turn.attributes["aos.agent_id"] == "echoer" and turn.status.status_code == StatusCode.UNSET
    assert turn.start_time <= models[0].start_time and call_request.end_time <= turn.end_time
    # spans never carry what was said or sent
    for item in ours:
        assert "traced" not in json.dumps(dict(item.attributes), default=str)

    # logs written while a span was current carry its trace id (the outputs router logs the reply)
    routed = [r for r in caplog.records if r.name == "aos.kernel.outputs" and "agent.reply" in r.getMessage()]
    assert routed and routed[0].trace_id == CALLER_TRACE and routed[0].span_id == f"{output.context.span_id:016x}"


@requires_mcp_servers
async def test_an_event_without_trace_context_starts_a_trace_at_the_wake(tmp_path: Path) -> None:
    """A Service Bus event from outside (no traceparent) gets one: the wake's span starts the trace,
    and the turn's spans join it."""
    from kernel.messages import Envelope
    from kernel.ports import OutboundMessage

    with telemetry.capture() as captured:
        async with running(tmp_path / "state", config_paths=_configs(tmp_path)) as platform:
            envelope = Envelope(type="ledger.entry", source="erp", to="echoer", data={"summary": "plain"})
            message = OutboundMessage.from_envelope(envelope)
            await platform.host.send("agent-events", message.body, message_id=message.message_id,
                                     properties=dict(message.application_properties), to="echoer")
            from realm_of_agents.ids import turn_instance_id

            record = await finished_turn(platform, "echoer", turn_instance_id("echoer", envelope.id))
            await settle(platform)
        spans = captured.spans.get_finished_spans()

    wake = _one(spans, names.WAKE, **{"aos.event.id": envelope.id})
    assert wake.parent is None  # the root
    turn = _one(spans, names.TURN, **{"aos.turn_id": record["turn_id"]})
    _parent(turn, wake)
    assert record["event"]["traceparent"].split("-")[1] == f"{wake.context.trace_id:032x}"
    assert {s.context.trace_id for s in spans if s.attributes.get("aos.turn_id") == record["turn_id"]} == {
        wake.context.trace_id}
