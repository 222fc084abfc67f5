"""Trace context between hops: traceparent parsing, the turn's derived span context, chosen span
ids, stamping outgoing envelopes, the HTTP ingress span, and the engine's invocation context."""

from __future__ import annotations

import json

import azure.functions as func
from azure.functions.servicebus import ServiceBusMessage
from opentelemetry.trace import SpanKind, StatusCode

from kernel import telemetry
from kernel.engine.invoke import InvocationContext, incoming_traceparent
from kernel.messages import Envelope
from kernel.telemetry.http import traced_route
from kernel.telemetry.ids import (
    chosen_ids,
    format_traceparent,
    parse_traceparent,
    turn_span_context,
)
from kernel.telemetry.spans import span, stamp

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT = f"00-{TRACE}-00f067aa0ba902b7-01"


def test_traceparent_round_trip_and_the_invalid_ones_w3c_says_to_ignore() -> None:
    context = parse_traceparent(PARENT)
    assert context is not None and context.is_remote and context.trace_flags.sampled
    assert format_traceparent(context) == PARENT
    for invalid in (None, "", "garbage", f"00-{'0' * 32}-00f067aa0ba902b7-01", f"00-{TRACE}-{'0' * 16}-01",
                    f"ff-{TRACE}-00f067aa0ba902b7-01", f"00-{TRACE.upper()}-00f067aa0ba902b7-01"):
        assert parse_traceparent(invalid) is None, invalid


def test_a_turns_span_context_is_a_pure_function_of_the_event_trace_and_the_turn() -> None:
    first = turn_span_context(PARENT, "turn-keeper-1")
    assert first == turn_span_context(PARENT, "turn-keeper-1")  # any activity, any instance, any replay
    assert first.trace_id == int(TRACE, 16) and first.span_id != parse_traceparent(PARENT).span_id
    assert turn_span_context(PARENT, "turn-keeper-2").span_id != first.span_id
    unsampled = turn_span_context(f"00-{TRACE}-00f067aa0ba902b7-00", "turn-keeper-1")
    assert not unsampled.trace_flags.sampled
    orphan = turn_span_context(None, "turn-keeper-1")  # an event that came without trace context
    assert orphan == turn_span_context(None, "turn-keeper-1") and orphan.trace_id != first.trace_id


def test_the_id_generator_hands_out_chosen_ids_for_one_span_only() -> None:
    with telemetry.capture() as captured:
        tracer = captured.telemetry.tracer
        with chosen_ids(0xABCDEF, trace_id=0x1234):
            root = tracer.start_span("chosen")
        other = tracer.start_span("random")
        root.end()
        other.end()
    assert (root.get_span_context().trace_id, root.get_span_context().span_id) == (0x1234, 0xABCDEF)
    assert other.get_span_context().span_id != 0xABCDEF


def test_an_outgoing_envelope_carries_the_current_span() -> None:
    envelope = Envelope(type="ledger.entry", source="api", to="keeper", traceparent=PARENT)
    assert stamp(envelope) is envelope  # no current span: unchanged
    with telemetry.capture(), span("agent.publish", parent=PARENT) as current:
        stamped = stamp(envelope)
    assert stamped.traceparent == format_traceparent(current.get_span_context())
    assert stamped.traceparent.split("-")[1] == TRACE and stamped.id == envelope.id
    with telemetry.capture():  # with a no-op tracer (OTEL_SDK_DISABLED) the envelope keeps what it had
        from kernel.telemetry.config import TelemetryConfig
        from kernel.telemetry.setup import build

        disabled = build(TelemetryConfig(service_name="aos", disabled=True))
        with disabled.tracer.start_as_current_span("x"):
            assert stamp(envelope).traceparent == PARENT


async def test_the_http_span_continues_the_callers_trace_and_records_the_status() -> None:
    @traced_route("agents/{agent_id}/events")
    async def handler(req: func.HttpRequest) -> func.HttpResponse:
        status = 500 if req.route_params["agent_id"] == "broken" else 202
        return func.HttpResponse(json.dumps({"traceparent": telemetry.current_traceparent()}), status_code=status)

    def request(agent: str, headers: dict[str, str], body: dict) -> func.HttpRequest:
        return func.HttpRequest("POST", f"http://localhost/api/agents/{agent}/events?code=secret-key",
                                headers=headers, route_params={"agent_id": agent}, body=json.dumps(body).encode())

    with telemetry.capture() as captured:
        by_header = await handler(req=request("keeper", {"traceparent": PARENT}, {}))
        await handler(request("keeper", {}, {"type": "x", "traceparent": f"00-{'a' * 32}-{'b' * 16}-01"}))
        fresh = await handler(request("broken", {}, {"type": "x"}))
    spans = captured.spans.get_finished_spans()
    assert [s.name for s in spans] == ["POST /api/agents/{agent_id}/events"] * 3
    header_span, body_span, fresh_span = spans
    assert header_span.kind == SpanKind.SERVER and header_span.parent.span_id == 0x00F067AA0BA902B7
    assert json.loads(by_header.get_body())["traceparent"].split("-")[2] == f"{header_span.context.span_id:016x}"
    assert body_span.context.trace_id == int("a" * 32, 16) and body_span.parent.span_id == int("b" * 16, 16)
    assert fresh_span.parent is None and fresh.status_code == 500
    assert fresh_span.status.status_code == StatusCode.ERROR and fresh_span.attributes["http.response.status_code"] == 500
    assert header_span.attributes["url.path"] == "/api/agents/keeper/events"  # no query: it may hold a key
    assert header_span.attributes["aos.agent_id"] == "keeper"


def test_the_engine_gives_an_invocation_the_triggers_trace() -> None:
    request = func.HttpRequest("POST", "http://localhost/api/x", headers={"traceparent": PARENT}, body=b"")
    assert incoming_traceparent({"req": request}) == PARENT
    context = InvocationContext("f", "/app", incoming_traceparent({"req": request}))
    traceparent = context.trace_context.Traceparent
    assert traceparent.split("-")[1] == TRACE and traceparent.split("-")[2] != "00f067aa0ba902b7"
    message = ServiceBusMessage(body=b"{}", message_id="m-1", application_properties={"traceparent": PARENT},
                                user_properties={})
    assert incoming_traceparent({"messages": [message]}) == PARENT
    assert incoming_traceparent({"timer": object()}) is None
    assert InvocationContext("f", "/app").trace_context.Traceparent.split("-")[1] != TRACE
