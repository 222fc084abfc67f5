"""The platform's own tools for MCP clients outside it: ask an agent, send an event, search memory.

Each is an ``mcpToolTrigger`` function, so in Azure the Functions MCP extension serves them at
``/runtime/webhooks/mcp`` and locally the embedded engine serves the same at the same path (see
docs/remote-mcp.md). The functions take the extension's trigger argument (a JSON string whose
``arguments`` are the tool call's) and answer in the worker's result envelope (``useResultSchema``),
which carries a ``CallToolResult``: JSON text plus the same as structured content, or
``isError`` with a message naming what was wrong.

The work is :class:`RemoteTools`, which talks only to the kernel's ports: the message sender
(events go on the agent-events topic, as the HTTP API sends them), the turn archive (shared
storage any app can read) and the declared configs. Nothing here needs the realm's Durable task
hub, so the tools run in whichever app serves them.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import azure.durable_functions as df
from pydantic import ValidationError

from kernel import runtime
from kernel.config.loader import ConfigSet
from kernel.config.store import default_store
from kernel.messages import Envelope, describe_invalid
from kernel.ports import MessageSender, NotFound, OutboundMessage
from kernel.topology import AGENT_EVENTS
from realm_of_agents.archive import TurnArchive
from realm_of_agents.ids import turn_instance_id
from realm_of_agents.routing import route

__all__ = ["ASK_TYPE", "SOURCE", "RemoteTools", "ToolInputError", "bp", "result_envelope"]

bp = df.Blueprint()

#: The envelope ``source`` of events sent through these tools (replies are addressed back to it).
SOURCE = "mcp"
#: Event type of a question asked with ``ask_agent`` when the caller names none.
ASK_TYPE = "question.asked"
DEFAULT_WAIT_SECONDS = 60.0
#: Azure's front end drops an HTTP request idle for 230 s; a tool call must answer before that.
MAX_WAIT_SECONDS = 200.0
DEFAULT_SEARCH_LIMIT = 10
MAX_SEARCH_LIMIT = 50
_POLL_FIRST, _POLL_MAX = 0.05, 1.0
_KNOWN_AGENTS_SHOWN = 20


class ToolInputError(ValueError):
    """The call's arguments are wrong; the message says which and how (shown to the caller)."""


# -- the tools' work --------------------------------------------------------------------------------


@dataclass
class RemoteTools:
    """What the three tools do, through the kernel's ports."""

    sender: MessageSender
    archive: TurnArchive
    configs: Callable[[], ConfigSet]
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    async def ask(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Send a question to one agent and wait (bounded) for its turn to be archived."""
        agent_id = self._agent(arguments.get("agent_id"))
        wait = _wait_seconds(arguments.get("timeout_seconds"))
        if arguments.get("text") is None and arguments.get("data") is None:
            raise ToolInputError("give the question as 'text' (or a JSON payload as 'data')")
        envelope = _event(agent_id, arguments.get("type") or ASK_TYPE, arguments.get("text"), arguments.get("data"))
        await self._send(envelope)
        turn_id = turn_instance_id(agent_id, envelope.id)
        answer = {"agent_id": agent_id, "event_id": envelope.id, "turn_id": turn_id}
        record = await self._archived(agent_id, turn_id, wait)
        if record is None:
            return {"status": "pending", **answer, "message": (
                f"agent '{agent_id}' has not finished the turn for event {envelope.id} within {wait:g} s; the event "
                f"was delivered and the turn goes on. Look later: GET /api/agents/{agent_id}/turns/{turn_id}, "
                "or search_agent_memory once it is archived.")}
        return {"status": "answered", **answer, "outcome": record.get("outcome"), "reply": record.get("reply"),
                "error": record.get("error"), "finished": record.get("finished")}

    async def send(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Send one event to an agent, or broadcast it to the agents subscribed to its type."""
        target = arguments.get("agent_id")
        agent_id = self._agent(target) if target not in (None, "") else None
        if not arguments.get("type"):
            raise ToolInputError("give the event 'type', such as 'invoice.received'")
        envelope = _event(agent_id, arguments["type"], arguments.get("text"), arguments.get("data"))
        configs = self.configs()
        woken = route(envelope, configs.agents, subscribers=configs.subscribers).agents
        await self._send(envelope)
        return {"event_id": envelope.id, "type": envelope.type, "to": agent_id,
                "turns": {agent: turn_instance_id(agent, envelope.id) for agent in woken},
                **({} if woken else {"note": f"no enabled agent subscribes to '{envelope.type}'; nothing will run"})}

    async def search(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """The archive's lexical search over one agent's turns, best first."""
        agent_id = _text(arguments.get("agent_id"), "agent_id")
        query = _text(arguments.get("query"), "query")
        limit = _whole(arguments.get("limit"), "limit", DEFAULT_SEARCH_LIMIT, MAX_SEARCH_LIMIT)
        if agent_id not in self.configs().agents and not await self._has_turns(agent_id):
            raise ToolInputError(self._unknown(agent_id))
        try:
            results = await self.archive.search(agent_id, query, limit=limit)
        except ValueError as bad:  # a query with no searchable words, an id the archive refuses
            raise ToolInputError(str(bad)) from None
        return {"agent_id": agent_id, "query": query, "results": results}

    # helpers ---------------------------------------------------------------------------------
    def _agent(self, value: Any) -> str:
        agent_id = _text(value, "agent_id")
        if agent_id not in self.configs().agents:
            raise ToolInputError(self._unknown(agent_id))
        return agent_id

    def _unknown(self, agent_id: str) -> str:
        known = sorted(self.configs().agents)
        shown = ", ".join(known[:_KNOWN_AGENTS_SHOWN]) + (", ..." if len(known) > _KNOWN_AGENTS_SHOWN else "")
        return f"no agent '{agent_id}' is declared in config (declared: {shown or 'none'})"

    async def _has_turns(self, agent_id: str) -> bool:
        try:
            return bool(await self.archive.recent(agent_id, 1))
        except ValueError:
            return False

    async def _send(self, envelope: Envelope) -> None:
        await self.sender.send(AGENT_EVENTS, [OutboundMessage.from_envelope(envelope)])

    async def _archived(self, agent_id: str, turn_id: str, wait: float) -> dict[str, Any] | None:
        """The turn's record once archived; ``None`` if that takes longer than ``wait`` seconds."""
        deadline = time.monotonic() + wait
        delay = _POLL_FIRST
        while True:
            try:
                return await self.archive.get(agent_id, turn_id)
            except NotFound:
                pass
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            await self.sleep(min(delay, left))
            delay = min(delay * 2, _POLL_MAX)


def _event(agent_id: str | None, event_type: Any, text: Any, data: Any) -> Envelope:
    if text is not None:
        if not isinstance(text, str):
            raise ToolInputError(f"'text' must be a string, got {type(text).__name__}")
        if data is None:
            data = {"text": text}
        elif isinstance(data, dict):
            data = {**data, "text": text}
        else:
            raise ToolInputError("'text' goes into the event's data, so 'data' must then be a JSON object")
    try:
        return Envelope(id=uuid.uuid4().hex, type=event_type, source=SOURCE, to=agent_id, data=data)
    except ValidationError as invalid:
        raise ToolInputError(f"invalid event: {describe_invalid(invalid)}") from None


def _text(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ToolInputError(f"'{name}' is required and must be non-empty text")
    return value.strip()


def _wait_seconds(value: Any) -> float:
    if value is None:
        return DEFAULT_WAIT_SECONDS
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= MAX_WAIT_SECONDS:
        raise ToolInputError(f"'timeout_seconds' must be a number of seconds above 0 and at most {MAX_WAIT_SECONDS:g}")
    return float(value)


def _whole(value: Any, name: str, default: int, most: int) -> int:
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ToolInputError(f"'{name}' must be a whole number from 1 to {most}")
    return value


# -- the functions ---------------------------------------------------------------------------------


def result_envelope(data: Mapping[str, Any] | None = None, *, error: str | None = None) -> str:
    """A ``CallToolResult`` in the worker's envelope for ``useResultSchema`` tools.

    The shape is the one azure.functions' own ``mcp_tool`` decorator returns for a CallToolResult:
    ``{"type": "call_tool_result", "content": <result JSON>, "structuredContent": <JSON or null>}``.
    """
    if error is not None:
        result: dict[str, Any] = {"content": [{"type": "text", "text": error}], "isError": True}
        structured = None
    else:
        structured = json.dumps(data, default=str)
        text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
        result = {"content": [{"type": "text", "text": text}], "structuredContent": data, "isError": False}
    return json.dumps({"type": "call_tool_result", "content": json.dumps(result, default=str),
                       "structuredContent": structured})


async def _answer(context: str, work: Callable[[RemoteTools, Mapping[str, Any]], Awaitable[dict[str, Any]]]) -> str:
    """Parse the trigger argument, do the work, answer in the envelope (input errors as isError)."""
    try:
        invocation = json.loads(context) if isinstance(context, (str, bytes)) else context
        arguments = (invocation.get("arguments") or {}) if isinstance(invocation, Mapping) else None
        if not isinstance(arguments, Mapping):
            raise ToolInputError("the tool call's arguments must be a JSON object")
        adapters = runtime.adapters()
        tools = RemoteTools(adapters.sender, TurnArchive(adapters.blobs, adapters.tables), default_store().current)
        return result_envelope(await work(tools, arguments))
    except ToolInputError as bad:
        return result_envelope(error=str(bad))


def _properties(*properties: tuple[str, str, str, bool]) -> str:
    """``toolProperties`` as the extension reads them."""
    return json.dumps([{"propertyName": name, "propertyType": kind, "description": description, "isRequired": required}
                       for name, kind, description, required in properties])


_AGENT_ID = ("agent_id", "string", "The agent's id, as declared in its config (e.g. 'cfo').", True)


@bp.mcp_tool_trigger(
    arg_name="context", tool_name="ask_agent", use_result_schema=True,
    description=("Ask an agent something and wait for its answer: sends it an event and returns the reply, the "
                 "outcome (replied, declined, failed) and the turn id. If the turn takes longer than "
                 "timeout_seconds, returns the event and turn ids to look up later."),
    tool_properties=_properties(
        _AGENT_ID,
        ("text", "string", "The question or request, in words (goes into the event's data as 'text').", False),
        ("data", "object", "A JSON payload for the event, instead of or besides 'text'.", False),
        ("type", "string", f"The event type (default '{ASK_TYPE}'); agents judge events by type and content.", False),
        ("timeout_seconds", "number", f"How long to wait for the turn (default {DEFAULT_WAIT_SECONDS:g}, at most "
                                      f"{MAX_WAIT_SECONDS:g}).", False),
    ))
async def ask_agent(context: str) -> str:
    return await _answer(context, RemoteTools.ask)


@bp.mcp_tool_trigger(
    arg_name="context", tool_name="send_event", use_result_schema=True,
    description=("Send an event without waiting: to one agent (agent_id), or without agent_id to every agent "
                 "subscribed to its type. Returns the event id and the turn id of each agent it wakes."),
    tool_properties=_properties(
        ("type", "string", "The event type, such as 'invoice.received'.", True),
        ("agent_id", "string", "The agent to send it to; leave out to broadcast by type.", False),
        ("data", "object", "The event's JSON payload.", False),
        ("text", "string", "Words to put into the payload as 'text'.", False),
    ))
async def send_event(context: str) -> str:
    return await _answer(context, RemoteTools.send)


@bp.mcp_tool_trigger(
    arg_name="context", tool_name="search_agent_memory", use_result_schema=True,
    description=("Search an agent's archived turns by words (event type, payload, reply, rationale); best matches "
                 "first, each with its turn id, time, outcome and score."),
    tool_properties=_properties(
        _AGENT_ID,
        ("query", "string", "The words to look for.", True),
        ("limit", "integer", f"Most results (default {DEFAULT_SEARCH_LIMIT}, at most {MAX_SEARCH_LIMIT}).", False),
    ))
async def search_agent_memory(context: str) -> str:
    return await _answer(context, RemoteTools.search)
