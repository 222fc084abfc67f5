"""Spans for the turn's activities, applied where the realm blueprint binds them.

The turn orchestration replays, so it holds no span; each activity starts its own as a child of
the turn's derived span context (``kernel.telemetry.turns.turn_context``: the event's traceparent
and the turn id, both in the activity's input). Activities that send messages rewrite the outgoing
traceparent to their span, so the receiver's span is its child: ``mcp.request`` (a tool request
to the gateway) and ``agent.publish`` (the turn's outputs). The archive activity emits the
``agent.turn`` span itself and counts the turn's metrics, once the record is stored.

Spans carry ids, names, counts and outcomes — never prompts, replies, tool arguments or results.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from opentelemetry.trace import Span, SpanKind

from kernel.telemetry import spans
from kernel.telemetry.spans import current_traceparent, messaging, span
from kernel.telemetry.turns import record_turn, turn_context
from kernel.topology import AGENT_OUTPUTS, MCP_REQUESTS
from realm_of_agents import turn
from realm_of_agents.ids import turn_instance_id

log = logging.getLogger("aos.telemetry")
Activity = TypeVar("Activity", bound=Callable[..., Any])
Request = dict[str, Any]


@dataclass(frozen=True)
class _Traced:
    """How one activity is traced."""

    name: str
    kind: SpanKind
    #: (the event's traceparent, the turn id) from the activity's input
    turn: Callable[[Request], tuple[str | None, str]]
    attributes: Callable[[Request], dict[str, Any]]
    #: the input as the activity should get it, inside its span (outgoing traceparents rewritten)
    prepare: Callable[[Request], Request] | None = None
    #: what the result adds to the span
    finish: Callable[[Span, Request, Any], None] | None = None


def _agent(request: Request) -> dict[str, Any]:
    return {"aos.agent_id": request.get("agent_id"), "aos.turn_id": request.get("turn_id")}


def _assess_turn(request: Request) -> tuple[str | None, str]:
    event = request["event"]
    return event.get("traceparent"), turn_instance_id(request["agent_id"], event["id"])


def _assessed(current: Span, request: Request, result: Any) -> None:
    if isinstance(result, dict):
        current.set_attributes(spans.clean({"aos.aligned": result.get("aligned"), "aos.alignment.method": result.get("method")}))


def _modelled(current: Span, request: Request, completion: Any) -> None:
    if not isinstance(completion, dict):
        return
    usage = completion.get("usage") or {}
    current.set_attributes(spans.clean({
        "gen_ai.response.model": completion.get("model"), "gen_ai.usage.input_tokens": usage.get("prompt_tokens"),
        "gen_ai.usage.output_tokens": usage.get("completion_tokens"), "aos.provider": completion.get("provider"),
        "aos.endpoint": completion.get("endpoint"), "aos.adapter": completion.get("adapter"),
        "aos.cached": bool(completion.get("cached")), "aos.fallback": bool(completion.get("fallback")),
        "aos.attempts": completion.get("attempts"), "aos.tool_calls_requested": len(completion.get("tool_calls") or []),
    }))


def _tool_done(current: Span, request: Request, result: Any) -> None:
    if isinstance(result, dict) and result.get("is_error"):
        spans.fail(current, "the tool answered with an error")


def _tool_request_turn(request: Request) -> tuple[str | None, str]:
    return request.get("traceparent"), request["request"]["instance_id"]


def _tool_request_attributes(request: Request) -> dict[str, Any]:
    asked = request["request"]
    return {**messaging(MCP_REQUESTS, operation="send", message_id=asked.get("call_id")),
            "aos.agent_id": asked.get("agent_id"), "aos.turn_id": asked.get("instance_id"),
            "aos.mcp.op": asked.get("op"), "aos.mcp.server": asked.get("server"), "aos.mcp.tool": asked.get("tool"),
            "aos.mcp.call_id": asked.get("call_id")}


def _with_own_traceparent(request: Request) -> Request:
    return {**request, "traceparent": current_traceparent() or request.get("traceparent")}


def _publish_turn(request: Request) -> tuple[str | None, str]:
    first = request["outputs"][0]
    return first.get("traceparent"), turn_instance_id(first["source"], first["causation_id"])


def _publish_attributes(request: Request) -> dict[str, Any]:
    outputs = request["outputs"]
    return {**messaging(AGENT_OUTPUTS, operation="send"), "aos.agent_id": outputs[0].get("source"),
            "aos.outputs": len(outputs), "aos.output_types": ",".join(sorted({str(o.get("type")) for o in outputs}))}


def _outputs_stamped(request: Request) -> Request:
    traceparent = current_traceparent()
    if traceparent is None:
        return request
    return {**request, "outputs": [{**output, "traceparent": traceparent} for output in request["outputs"]]}


def _archived(current: Span, record: Request, result: Any) -> None:
    record_turn(record)


TRACED: dict[str, _Traced] = {
    turn.ASSESS: _Traced(spans.ASSESS, SpanKind.INTERNAL, _assess_turn,
                         lambda r: {"aos.agent_id": r.get("agent_id"), "aos.event.type": r["event"].get("type")},
                         finish=_assessed),
    turn.MODEL: _Traced(spans.MODEL, SpanKind.CLIENT, lambda r: (r.get("traceparent"), r["turn_id"]),
                        lambda r: {**_agent(r), "aos.step": r.get("step"), "gen_ai.operation.name": "chat"},
                        finish=_modelled),
    turn.TOOL: _Traced(spans.TOOL, SpanKind.INTERNAL, lambda r: (r.get("traceparent"), r["turn_id"]),
                       lambda r: {**_agent(r), "aos.tool.server": r.get("server"), "aos.tool.name": r.get("tool"),
                                  "aos.tool.index": r.get("index")},
                       finish=_tool_done),
    turn.TOOL_REQUEST: _Traced(spans.TOOL_REQUEST, SpanKind.PRODUCER, _tool_request_turn, _tool_request_attributes,
                               prepare=_with_own_traceparent),
    turn.PUBLISH: _Traced(spans.PUBLISH, SpanKind.PRODUCER, _publish_turn, _publish_attributes,
                          prepare=_outputs_stamped),
    turn.ARCHIVE: _Traced(spans.ARCHIVE, SpanKind.INTERNAL, lambda r: ((r.get("event") or {}).get("traceparent"), r["turn_id"]),
                          lambda r: {**_agent(r), "aos.outcome": r.get("outcome")}, finish=_archived),
}


def traced_activity(activity: str) -> Callable[[Activity], Activity]:
    """Run the activity (input parameter ``request``) in its span, a child of its turn's span."""

    def decorate(function: Activity) -> Activity:
        @functools.wraps(function)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            request = kwargs["request"] if "request" in kwargs else args[0]

            async def call(prepared: Request) -> Any:
                if "request" in kwargs:
                    return await function(*args, **{**kwargs, "request": prepared})
                return await function(prepared, *args[1:], **kwargs)

            return await run_traced(activity, call, request)

        return traced  # type: ignore[return-value]

    return decorate


async def run_traced(activity: str, function: Callable[[Request], Any], request: Request) -> Any:
    """``await function(request)`` in ``activity``'s span, as ``traced_activity`` does; for an activity
    that does the work of several (``agent_conclude`` archives and publishes) with the same spans."""
    how = TRACED[activity]
    try:
        traceparent, turn_id = how.turn(request)
        attributes = how.attributes(request)
    except (KeyError, IndexError, TypeError, AttributeError):  # not the shape this knows: run it untraced
        return await function(request)
    with span(how.name, kind=how.kind, parent=turn_context(traceparent, turn_id), attributes=attributes) as current:
        if how.prepare is not None:
            request = how.prepare(request)
        result = await function(request)
        if how.finish is not None:
            try:
                how.finish(current, request, result)
            except Exception:
                log.warning("telemetry: recording %s of turn %s failed", activity, turn_id, exc_info=True)
        return result
