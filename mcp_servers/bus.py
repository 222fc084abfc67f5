"""The gateway's Service Bus side: a request envelope in, the answer on the responses topic.

Requests that cannot be read are kept in the dead-letter store with the reason; when the
envelope still says who is waiting (its data names the instance and call id), an error answer
goes back too, so the turn records the problem at once instead of waiting for its timeout.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from opentelemetry.trace import Span, SpanKind
from pydantic import ValidationError

from kernel.deadletters import DeadLetterStore
from kernel.messages import Envelope, describe_invalid
from kernel.ports import MessageSender, OutboundMessage
from kernel.telemetry.spans import GATEWAY, MCP_CALL, clean, current_traceparent, fail, messaging, span
from kernel.toolbus import REQUEST_PREFIX, ToolRequest, error_result, response_envelope
from kernel.topology import GATEWAY_SUBSCRIPTION, MCP_REQUESTS, MCP_RESPONSES

if TYPE_CHECKING:  # imports the mcp SDK; the gateway object comes from McpServices
    from mcp_servers.gateway import ToolGateway

log = logging.getLogger("aos.mcp.gateway")
SOURCE = f"{MCP_REQUESTS}/{GATEWAY_SUBSCRIPTION}"


async def answer(request: ToolRequest, gateway: ToolGateway) -> dict[str, Any]:
    """What the gateway answers to one request."""
    if request.op == "list_tools":
        return await gateway.list_tools(request.agent_id)
    if not request.server:
        return error_result(f"a '{request.op}' request needs 'server'", error="InvalidRequest")
    if request.op == "call_tool":
        if not request.tool:
            return error_result("a 'call_tool' request needs 'tool'", error="InvalidRequest")
        return await gateway.call_tool(request.agent_id, request.server, request.tool, request.arguments,
                                       call_id=request.call_id)
    if request.op == "list_resources":
        return await gateway.list_resources(request.agent_id, request.server)
    if not request.uri:
        return error_result("a 'read_resource' request needs 'uri'", error="InvalidRequest")
    return await gateway.read_resource(request.agent_id, request.server, request.uri)


async def handle_request(body: bytes, message_id: str | None, gateway_factory: Any, sender: MessageSender,
                         deadletters: DeadLetterStore) -> str:
    """Answer one request message; returns what happened ("answered" or "dead-lettered").

    It runs in an ``mcp.gateway`` span, a child of the requester's span (the envelope's
    traceparent), with the tool call in an ``mcp.call`` span inside it; the answer carries the
    gateway span's traceparent, so the kernel's delivery span is its child."""
    envelope: Envelope | None = None
    try:
        envelope = Envelope.from_json(body)
    except (ValidationError, ValueError):
        pass
    with span(GATEWAY, kind=SpanKind.CONSUMER, parent=envelope.traceparent if envelope else None,
              attributes=messaging(MCP_REQUESTS, operation="process", message_id=message_id)) as current:
        return await _handle(body, message_id, envelope, gateway_factory, sender, deadletters, current)


async def _handle(body: bytes, message_id: str | None, envelope: Envelope | None, gateway_factory: Any,
                  sender: MessageSender, deadletters: DeadLetterStore, current: Span) -> str:
    try:
        if envelope is None:
            envelope = Envelope.from_json(body)
        if not envelope.type.startswith(REQUEST_PREFIX):
            raise ValueError(f"type '{envelope.type}' is not an MCP request (mcp.<op>)")
        request = ToolRequest.model_validate(envelope.data)
        if envelope.type != f"{REQUEST_PREFIX}{request.op}":
            raise ValueError(f"type '{envelope.type}' does not match op '{request.op}'")
    except (ValidationError, ValueError) as error:
        reason = f"malformed MCP request on {MCP_REQUESTS}: " + (
            describe_invalid(error) if isinstance(error, ValidationError) else str(error))
        fail(current, reason)
        await deadletters.record(kind="malformed", reason=reason, body=body, source=SOURCE, message_id=message_id)
        await _answer_anyway(body, reason, sender)
        return "dead-lettered"
    current.set_attributes(clean({"aos.agent_id": request.agent_id, "aos.turn_id": request.instance_id,
                                  "aos.mcp.op": request.op, "aos.mcp.server": request.server,
                                  "aos.mcp.tool": request.tool, "aos.mcp.call_id": request.call_id}))
    gateway = await gateway_factory()
    with span(MCP_CALL, kind=SpanKind.CLIENT, attributes={
            "aos.mcp.op": request.op, "aos.mcp.server": request.server, "aos.mcp.tool": request.tool}) as call:
        result = await answer(request, gateway)
        if isinstance(result, dict) and result.get("is_error"):
            fail(call, f"{request.op} answered an error ({result.get('error') or 'tool error'})")
    reply = response_envelope(request, result, causation_id=envelope.id,
                              traceparent=current_traceparent() or envelope.traceparent)
    await sender.send(MCP_RESPONSES, [OutboundMessage.from_envelope(reply)])
    return "answered"


async def _answer_anyway(body: bytes, reason: str, sender: MessageSender) -> None:
    """An error answer for a broken request that still names its instance and call id."""
    try:
        data = Envelope.from_json(body).data
        request = ToolRequest.model_construct(op="call_tool", agent_id=str(data["agent_id"]),
                                              instance_id=str(data["instance_id"]), call_id=str(data["call_id"]))
        if not request.instance_id or not request.call_id:
            return
    except (ValidationError, ValueError, KeyError, TypeError):
        return
    reply = response_envelope(request, error_result(reason, error="InvalidRequest"), causation_id=request.call_id,
                              traceparent=current_traceparent())
    await sender.send(MCP_RESPONSES, [OutboundMessage.from_envelope(reply)])
    log.warning("answered a malformed MCP request for %s with an error", request.instance_id)
