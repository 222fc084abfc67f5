"""The gateway's Service Bus side: a request envelope in, the answer on the responses topic.

Requests that cannot be read are kept in the dead-letter store with the reason; when the
envelope still says who is waiting (its data names the instance and call id), an error answer
goes back too, so the turn records the problem at once instead of waiting for its timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from pydantic import ValidationError

from kernel.deadletters import DeadLetterStore
from kernel.messages import Envelope, describe_invalid
from kernel.ports import MessageSender, OutboundMessage
from kernel.toolbus import REQUEST_PREFIX, ToolRequest, error_result, response_envelope
from kernel.topology import GATEWAY_SUBSCRIPTION, MCP_REQUESTS, MCP_RESPONSES
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
    """Answer one request message; returns what happened ("answered" or "dead-lettered")."""
    try:
        envelope = Envelope.from_json(body)
        if not envelope.type.startswith(REQUEST_PREFIX):
            raise ValueError(f"type '{envelope.type}' is not an MCP request (mcp.<op>)")
        request = ToolRequest.model_validate(envelope.data)
        if envelope.type != f"{REQUEST_PREFIX}{request.op}":
            raise ValueError(f"type '{envelope.type}' does not match op '{request.op}'")
    except (ValidationError, ValueError) as error:
        reason = f"malformed MCP request on {MCP_REQUESTS}: " + (
            describe_invalid(error) if isinstance(error, ValidationError) else str(error))
        await deadletters.record(kind="malformed", reason=reason, body=body, source=SOURCE, message_id=message_id)
        await _answer_anyway(body, reason, sender)
        return "dead-lettered"
    gateway = await gateway_factory()
    result = await answer(request, gateway)
    reply = response_envelope(request, result, causation_id=envelope.id, traceparent=envelope.traceparent)
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
    reply = response_envelope(request, error_result(reason, error="InvalidRequest"), causation_id=request.call_id)
    await sender.send(MCP_RESPONSES, [OutboundMessage.from_envelope(reply)])
    log.warning("answered a malformed MCP request for %s with an error", request.instance_id)
