"""The turn's activities, wrapped where the realm blueprint binds them: each span a child of the
turn's derived span, outgoing traceparents rewritten, failures recorded, and tracing never failing
an activity."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

from kernel import telemetry
from kernel.telemetry.ids import format_traceparent, turn_span_context
from realm_of_agents import tracing, turn
from realm_of_agents.tracing import traced_activity

EVENT_TRACEPARENT = "00-6d7f8e9a0b1c2d3e4f5a6b7c8d9e0f1a-1111111111111111-01"
TURN_ID = "turn-keeper-0123456789abcdef"


async def test_a_model_call_is_a_client_span_under_its_turn_with_what_the_model_used() -> None:
    @traced_activity(turn.MODEL)
    async def model(request: dict[str, Any]) -> dict[str, Any]:
        return {"provider": "offline", "model": "offline", "tool_calls": [{"id": "1"}], "cached": False,
                "usage": {"prompt_tokens": 12, "completion_tokens": 3}, "content": "the secret plan"}

    with telemetry.capture() as captured:
        await model(request={"agent_id": "keeper", "turn_id": TURN_ID, "step": 0, "messages": [],
                             "traceparent": EVENT_TRACEPARENT})
    [span] = captured.spans.get_finished_spans()
    assert span.name == "agent.model" and span.kind == SpanKind.CLIENT
    assert span.parent.span_id == turn_span_context(EVENT_TRACEPARENT, TURN_ID).span_id
    assert span.context.trace_id == int(EVENT_TRACEPARENT.split("-")[1], 16)
    assert span.attributes["gen_ai.usage.input_tokens"] == 12 and span.attributes["aos.tool_calls_requested"] == 1
    assert "the secret plan" not in str(dict(span.attributes))


async def test_a_tool_request_goes_out_with_its_own_span_as_the_traceparent() -> None:
    seen: dict[str, Any] = {}

    @traced_activity(turn.TOOL_REQUEST)
    async def tool_request(request: dict[str, Any]) -> dict[str, Any]:
        seen.update(request)
        return {"wait_seconds": 35}

    asked = {"op": "call_tool", "agent_id": "keeper", "instance_id": TURN_ID, "call_id": f"{TURN_ID}:0",
             "server": "everything", "tool": "echo", "arguments": {"message": "hi"}}
    with telemetry.capture() as captured:
        await tool_request({"request": asked, "traceparent": EVENT_TRACEPARENT})
    [span] = captured.spans.get_finished_spans()
    assert span.kind == SpanKind.PRODUCER and span.attributes["messaging.destination.name"] == "mcp-requests"
    assert seen["traceparent"] == format_traceparent(span.get_span_context())
    assert seen["request"] == asked


async def test_a_failing_activity_marks_its_span_and_still_fails() -> None:
    @traced_activity(turn.MODEL)
    async def model(request: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("endpoint refused: api_key=sk-live-123 password=hunter2")

    with telemetry.capture() as captured, pytest.raises(ConnectionError):
        await model(request={"turn_id": TURN_ID, "traceparent": EVENT_TRACEPARENT})
    [span] = captured.spans.get_finished_spans()
    assert span.status.status_code == StatusCode.ERROR and span.status.description.startswith("endpoint refused")
    assert "hunter2" not in span.status.description and "sk-live-123" not in span.status.description
    assert span.events[0].attributes["exception.type"] == "ConnectionError"


async def test_tracing_never_fails_an_activity(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("exporter exploded")

    monkeypatch.setattr(tracing, "record_turn", broken)
    calls: list[Any] = []

    @traced_activity(turn.ARCHIVE)
    async def archive(request: dict[str, Any]) -> None:
        calls.append(request)

    @traced_activity(turn.MODEL)
    async def model(request: dict[str, Any]) -> str:
        return "ran"

    with telemetry.capture() as captured:
        await archive(request={"turn_id": TURN_ID, "agent_id": "keeper", "event": {"traceparent": EVENT_TRACEPARENT}})
        assert await model(request={"step": 0}) == "ran"  # a shape it does not know: run untraced
    assert len(calls) == 1
    assert [s.name for s in captured.spans.get_finished_spans()] == ["agent.archive"]
