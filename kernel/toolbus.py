"""The tool gateway's wire contract: MCP requests and responses as envelopes on Service Bus.

A turn (RealmOfAgents) asks the MCPServers app for a tool call by sending a request envelope on
``mcp-requests``; the gateway answers with a response envelope on ``mcp-responses``; the kernel's
trigger on that topic raises the response as an external event in the waiting turn.

* the request's ``correlation_id`` is the call id — turn id and call index — and also its
  message id, so a re-sent request is the same message, and the gateway, which keeps the first
  result per call id, does not call a tool twice;
* the request names the calling agent (``data.agent_id``, also the ``source``): the gateway
  checks it against that agent's grants, whatever the model asked for;
* the response goes ``to`` the waiting orchestration instance with the same ``correlation_id``,
  which is also the name of the external event the orchestration waits for.

Both sides import this module; it imports nothing from the apps.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kernel.messages import Envelope
from kernel.topology import MCP_RESPONSES

REQUEST_PREFIX = "mcp."
RESPONSE_TYPE = "mcp.response"
GATEWAY_SOURCE = "mcp-gateway"
#: Seconds a turn waits for the gateway beyond the server's own call timeout (bus hops, a server start).
ANSWER_MARGIN_SECONDS = 30

Operation = Literal["list_tools", "call_tool", "list_resources", "read_resource"]


class ToolRequest(BaseModel):
    """The data of a request envelope (its type is ``mcp.<op>``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    op: Operation
    agent_id: str = Field(min_length=1, max_length=128, description="The calling agent: its grants apply.")
    instance_id: str = Field(min_length=1, max_length=256, description="The orchestration waiting for the answer.")
    call_id: str = Field(min_length=1, max_length=110, description="Turn id and call index: one result per id.")
    server: str | None = None
    tool: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)
    uri: str | None = None

    def envelope(self, *, traceparent: str | None = None) -> Envelope:
        return Envelope(
            id=self.call_id, type=f"{REQUEST_PREFIX}{self.op}", source=self.agent_id, subject=self.server,
            correlation_id=self.call_id, reply_to=MCP_RESPONSES, traceparent=traceparent,
            data=self.model_dump(mode="json", exclude_none=True),
        )


def response_envelope(request: ToolRequest, answer: dict[str, Any], *, causation_id: str,
                      traceparent: str | None = None) -> Envelope:
    """The gateway's answer to ``request``; its id is unique per call, so a re-answer is a duplicate."""
    return Envelope(
        id=f"{request.call_id}.response", type=RESPONSE_TYPE, source=GATEWAY_SOURCE, to=request.instance_id,
        correlation_id=request.call_id, causation_id=causation_id, traceparent=traceparent, data=answer,
    )


def error_result(message: str, *, error: str) -> dict[str, Any]:
    """A tool result that carries a failure, in the shape of a real tool result (the model reads it)."""
    return {"content": [{"type": "text", "text": message}], "structured_content": None, "is_error": True,
            "error": error}


def list_call_id(turn_id: str, step: int) -> str:
    return f"{turn_id}:tools:{step}"


def tool_call_id(turn_id: str, index: int) -> str:
    return f"{turn_id}:{index}"


def belongs_to(call_id: str, instance_id: str) -> bool:
    """Whether a response's correlation id is one the instance can have asked for."""
    return call_id.startswith(f"{instance_id}:")
