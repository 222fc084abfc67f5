"""Each agent's context MCP server: its memory, archive and goals as MCP tools and resources.

An agent reaches beyond its hot memory through tools, like any other capability: this module
builds, per agent, an MCP server (the SDK's high-level ``MCPServer``) offering

* ``search_memory(query, limit)``: archived turns and hot-memory lines (window, summary, facts)
  that share words with the query, in two separate lists;
* ``read_turn(turn_id)``: one archived turn in full;
* ``list_goals()``: the agent's goals with status and progress;
* ``remember_fact(fact)``, ``update_goal(goal_id, action, progress, note)``,
  ``send_event(to, type, data)``: requests whose effect the backend decides;

and the resources ``agent://<id>/summary`` (text) and ``agent://<id>/goals`` (JSON).

What the tools read and change comes from a :class:`ContextBackend`. Inside a turn the
orchestration uses :class:`SnapshotBackend`: reads come from the state snapshot the turn started
with and from the archive; the three requests only validate and acknowledge, and the
orchestration applies them from the call arguments when the turn finishes (the entity changes
state in one operation per turn, so nothing writes to it mid-turn). Outside the platform,
``aos context-mcp`` (``context_cli.py``) serves the same server over stdio with a backend that
calls a running platform's HTTP API.

:func:`call_context_tool` and :func:`list_context_tools` go through the real MCP protocol
(JSON-RPC over the SDK's in-memory transport) with a server built per call, so the turn calls
these tools exactly as it calls any configured MCP server's, and gets results of the same shape
as ``McpServerManager.call_tool``. Startup stays cheap because the tool definitions (their
pydantic models and JSON schemas, ~2 ms each) are built once per process and shared by every
agent's server; building a server is then ~0.7 ms. Measured on a 2-core development machine with
the embedded adapters: one ``call_context_tool`` (build, initialize, call, close) takes ~4 ms for
``list_goals``, ~6 ms for ``read_turn`` and ~8-9 ms for ``search_memory`` over 60 archived turns;
the first call in a process ~30-50 ms.
"""

from __future__ import annotations

import functools
import json
import logging
import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Protocol, runtime_checkable

from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from kernel.config.models import REFERENCE_PATTERN as ID_PATTERN
from kernel.config.models import REFERENCE_RULE as ID_RULE
from kernel.ports import NotFound
from realm_of_agents.archive import TurnArchive
from realm_of_agents.memory import SUMMARY_LINE_CHARS
from realm_of_agents.purpose import terms

__all__ = [
    "SERVER_ID",
    "TOOL_NAMES",
    "ContextBackend",
    "ContextError",
    "SnapshotBackend",
    "build_context_server",
    "call_context_tool",
    "check_agent_id",
    "hot_memory_matches",
    "list_context_tools",
    "summary_text",
]

#: The server id the context tools are offered under (``context__search_memory``).
SERVER_ID = "context"
TOOL_NAMES = ("search_memory", "read_turn", "list_goals", "remember_fact", "update_goal", "send_event")
GOAL_ACTIONS = ("progress", "complete", "abandon")
#: Longest fact kept (as ``memory.pin_fact`` clips it).
FACT_CHARS = SUMMARY_LINE_CHARS * 2
#: Most hits one ``search_memory`` returns from each of the archive and hot memory.
MAX_SEARCH_LIMIT = 50
#: An event type as the message envelope accepts it.
_EVENT_TYPE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")
_AGENT_ID = re.compile(ID_PATTERN)
_APPLIES = "at the end of this turn"


class ContextError(Exception):
    """An anticipated failure (unknown goal, unreachable platform): its message goes to the model."""


@runtime_checkable
class ContextBackend(Protocol):
    """Where an agent's context server reads and sends. Failures the model should read are raised
    as :class:`ContextError`, ``kernel.ports.NotFound`` or ``ValueError`` with a clear message."""

    async def state(self, agent_id: str) -> dict[str, Any]:
        """The agent's state view: at least ``goals`` and ``memory`` as in ``agent_state``."""
        ...

    async def search(self, agent_id: str, query: str, limit: int) -> list[dict[str, Any]]:
        """Archived turns matching ``query`` (``TurnArchive.search`` rows, with ``score``)."""
        ...

    async def read_turn(self, agent_id: str, turn_id: str) -> dict[str, Any]: ...

    async def remember(self, agent_id: str, fact: str) -> dict[str, Any]: ...

    async def update_goal(self, agent_id: str, goal_id: str, change: dict[str, Any]) -> dict[str, Any]: ...

    async def send_event(self, agent_id: str, to: str, type: str, data: Any) -> dict[str, Any]: ...


class SnapshotBackend:
    """The backend inside a turn: reads the turn's state snapshot and the archive, writes nothing.

    ``remember``, ``update_goal`` and ``send_event`` validate their request and acknowledge it
    with ``{"accepted": True, "applies": "at the end of this turn", ...}``; the orchestration
    applies accepted requests from the tool calls' arguments when it finishes the turn.
    """

    def __init__(self, state: Mapping[str, Any], archive: TurnArchive) -> None:
        self._state = dict(state)
        self._archive = archive

    async def state(self, agent_id: str) -> dict[str, Any]:
        self._check_agent(agent_id)
        return self._state

    async def search(self, agent_id: str, query: str, limit: int) -> list[dict[str, Any]]:
        self._check_agent(agent_id)
        return await self._archive.search(agent_id, query, limit=limit)

    async def read_turn(self, agent_id: str, turn_id: str) -> dict[str, Any]:
        self._check_agent(agent_id)
        return await self._archive.get(agent_id, turn_id)

    async def remember(self, agent_id: str, fact: str) -> dict[str, Any]:
        self._check_agent(agent_id)
        text = " ".join(str(fact).split())
        if not text:
            raise ContextError("a fact needs some text")
        clipped = text if len(text) <= FACT_CHARS else text[: FACT_CHARS - 1] + "…"
        facts = (self._state.get("memory") or {}).get("facts") or []
        result: dict[str, Any] = {"accepted": True, "applies": _APPLIES, "fact": clipped}
        if clipped in facts:
            result["already_pinned"] = True
        if clipped != text:
            result["clipped_to_chars"] = FACT_CHARS
        return result

    async def update_goal(self, agent_id: str, goal_id: str, change: dict[str, Any]) -> dict[str, Any]:
        self._check_agent(agent_id)
        goals = self._state.get("goals") or []
        goal = next((g for g in goals if g.get("id") == goal_id), None)
        if goal is None:
            known = ", ".join(f"'{g.get('id')}'" for g in goals) or "none"
            raise ContextError(f"agent '{agent_id}' has no goal '{goal_id}'; its goals are: {known}")
        action = change.get("action")
        if action not in GOAL_ACTIONS:
            raise ContextError(f"unknown goal action {action!r}: expected one of {', '.join(GOAL_ACTIONS)}")
        progress = change.get("progress")
        if progress is not None and (isinstance(progress, bool) or not isinstance(progress, int) or not 0 <= progress <= 100):
            raise ContextError(f"progress must be a whole number from 0 to 100, got {progress!r}")
        if action == "progress" and progress is None and not change.get("note"):
            raise ContextError("a 'progress' update needs a progress value (0-100), a note, or both")
        return {"accepted": True, "applies": _APPLIES, "goal_id": goal_id, "change": dict(change),
                "goal_before": dict(goal)}

    async def send_event(self, agent_id: str, to: str, type: str, data: Any) -> dict[str, Any]:
        self._check_agent(agent_id)
        _check_event_request(to, type)
        return {"accepted": True, "applies": _APPLIES, "to": to, "type": type, "source": agent_id}

    def _check_agent(self, agent_id: str) -> None:
        own = self._state.get("id")
        if own is not None and own != agent_id:
            raise ContextError(f"this turn's context belongs to agent '{own}', not '{agent_id}'")


# ------------------------------------------------------------------------------------------ server


def check_agent_id(agent_id: Any) -> str:
    """An agent id as configs declare them (it is also the host of the ``agent://`` resource URIs)."""
    if not isinstance(agent_id, str) or not _AGENT_ID.match(agent_id):
        raise ValueError(f"invalid agent id {agent_id!r}: expected {ID_RULE}")
    return agent_id


class _ContextServer(MCPServer):
    """An ``MCPServer`` that knows whose context it serves; the shared tools read it from ``ctx``."""

    def __init__(self, agent_id: str, backend: ContextBackend, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.agent_id = agent_id
        self.backend = backend


def build_context_server(agent_id: str, backend: ContextBackend) -> MCPServer:
    """The context MCP server of ``agent_id`` over ``backend`` (cheap: build one per session).

    The six tools are the same objects in every agent's server (their schemas are built once per
    process); each call finds its agent and backend through the request context's server.
    """
    check_agent_id(agent_id)
    server = _new_server(
        agent_id,
        backend,
        name=f"aos-context-{agent_id}",
        instructions=(
            f"Memory, archive and goals of agent '{agent_id}'. search_memory finds past turns and "
            "remembered lines; read_turn opens one turn in full; remember_fact, update_goal and "
            "send_event are requests the platform applies."
        ),
        tools=_tools(),
    )

    @server.resource(f"agent://{agent_id}/summary", name="summary", mime_type="text/plain",
                     description="The agent's rolling summary of older turns and its pinned facts.")
    async def summary() -> str:
        return summary_text(await _resource_call(backend.state(agent_id)))

    @server.resource(f"agent://{agent_id}/goals", name="goals", mime_type="application/json",
                     description="The agent's goals with status and progress.")
    async def goals() -> str:
        state = await _resource_call(backend.state(agent_id))
        return json.dumps({"goals": [_goal_view(goal) for goal in state.get("goals") or []]}, ensure_ascii=False)

    return server


# ------------------------------------------------------------------------------------- tools


async def search_memory(
    ctx: Context,
    query: Annotated[str, Field(description="Words to look for, such as a vendor, an invoice number or an event type.")],
    limit: Annotated[int, Field(ge=1, le=MAX_SEARCH_LIMIT, description="Most hits from each source.")] = 5,
) -> dict[str, Any]:
    """Search this agent's memory: archived past turns (full history, newest scanned first) and
    the hot memory it holds now (recent turns, summary lines, pinned facts), as separate lists."""
    agent_id, backend = _bound(ctx)
    if not terms(query):
        raise ToolError(f"the query {query!r} has no searchable words; use words the turns would contain")
    state = await _backend_call(backend.state(agent_id))
    archive = await _backend_call(backend.search(agent_id, query, limit))
    return {
        "query": query,
        "archive": archive,
        "hot_memory": hot_memory_matches(state, query, limit),
        "note": "archive: past turns in full, open one with read_turn(turn_id); "
        "hot_memory: what the agent holds in its state now (window, summary, facts)",
    }


async def read_turn(
    ctx: Context,
    turn_id: Annotated[str, Field(description="A turn id from search_memory or the memory window.")],
) -> dict[str, Any]:
    """Read one archived turn in full: the event, the steps and tool calls, the reply and the decision."""
    agent_id, backend = _bound(ctx)
    return await _backend_call(backend.read_turn(agent_id, turn_id))


async def list_goals(ctx: Context) -> dict[str, Any]:
    """This agent's goals with their status (active, completed, abandoned), progress (0-100) and notes."""
    agent_id, backend = _bound(ctx)
    state = await _backend_call(backend.state(agent_id))
    return {"goals": [_goal_view(goal) for goal in state.get("goals") or []]}


async def remember_fact(
    ctx: Context,
    fact: Annotated[str, Field(description=f"One short fact to keep (up to {FACT_CHARS} characters).")],
) -> dict[str, Any]:
    """Pin a fact to this agent's memory, so it is in every future turn's context."""
    agent_id, backend = _bound(ctx)
    return await _backend_call(backend.remember(agent_id, fact))


async def update_goal(
    ctx: Context,
    goal_id: Annotated[str, Field(description="The goal's id, as list_goals shows it.")],
    action: Annotated[Literal["progress", "complete", "abandon"], Field(description="What happened to the goal.")],
    progress: Annotated[int | None, Field(ge=0, le=100, description="Progress in percent, for 'progress'.")] = None,
    note: Annotated[str | None, Field(description="A short note on why.")] = None,
) -> dict[str, Any]:
    """Record progress on a goal, or complete or abandon it."""
    agent_id, backend = _bound(ctx)
    change: dict[str, Any] = {"action": action}
    if progress is not None:
        change["progress"] = progress
    if note is not None:
        change["note"] = note
    return await _backend_call(backend.update_goal(agent_id, goal_id, change))


async def send_event(
    ctx: Context,
    to: Annotated[str, Field(description="The id of the agent to send the event to.")],
    type: Annotated[str, Field(description="The event type, such as 'finance.invoice.review_requested'.")],
    data: Annotated[Any, Field(description="The event's payload: any JSON value.")] = None,
) -> dict[str, Any]:
    """Ask the platform to deliver an event to another agent."""
    agent_id, backend = _bound(ctx)
    try:
        _check_event_request(to, type)
    except ContextError as error:
        raise ToolError(str(error)) from None
    return await _backend_call(backend.send_event(agent_id, to, type, data))


@functools.cache
def _tools() -> list[Tool]:
    """The tool definitions (schemas built once: about 2 ms per tool, most of a server's build)."""
    functions = (search_memory, read_turn, list_goals, remember_fact, update_goal, send_event)
    return [Tool.from_function(fn) for fn in functions]


def _bound(ctx: Context) -> tuple[str, ContextBackend]:
    server = ctx.mcp_server
    if not isinstance(server, _ContextServer):  # pragma: no cover - only _ContextServer registers the tools
        raise ToolError("the context tools run only in a server built by build_context_server")
    return server.agent_id, server.backend


async def call_context_tool(agent_id: str, backend: ContextBackend, tool: str,
                            arguments: Mapping[str, Any] | None) -> dict[str, Any]:
    """Call one context tool through MCP in memory; ``{"content", "structured_content", "is_error"}``."""
    async with _client(agent_id, backend) as client:
        result = await client.call_tool(tool, dict(arguments or {}))
    return _plain_result(result)


async def list_context_tools(agent_id: str, backend: ContextBackend) -> list[dict[str, Any]]:
    """The context tools as an MCP client lists them: ``[{"name", "description", "input_schema"}]``."""
    async with _client(agent_id, backend) as client:
        listed = await client.list_tools()
    return [{"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in listed.tools]


# ----------------------------------------------------------------------------------- views


def hot_memory_matches(state: Mapping[str, Any], query: str, limit: int) -> list[dict[str, Any]]:
    """Lines of hot memory sharing terms with ``query``: best first; ties go facts, window, summary, newest first."""
    wanted = terms(query)
    if not wanted:
        return []
    memory = state.get("memory") or {}
    candidates: list[dict[str, Any]] = [{"source": "fact", "text": fact} for fact in reversed(memory.get("facts") or [])]
    for turn in reversed(memory.get("window") or []):
        candidates.append({
            "source": "window",
            "turn_id": turn.get("turn_id"),
            "time": turn.get("time"),
            "event_type": turn.get("event_type"),
            "outcome": turn.get("outcome"),
            "text": turn.get("text", ""),
        })
    candidates.extend({"source": "summary", "text": line} for line in reversed(memory.get("summary") or []))
    scored = []
    for position, candidate in enumerate(candidates):
        searchable = f"{candidate.get('event_type') or ''} {candidate['text']}".replace(".", " ")
        found = len(wanted & terms(searchable))
        if found:
            scored.append((found / len(wanted), position, {**candidate, "score": round(found / len(wanted), 3)}))
    scored.sort(key=lambda item: (-item[0], item[1]))
    return [item for _, _, item in scored[:limit]]


def summary_text(state: Mapping[str, Any]) -> str:
    """The ``agent://<id>/summary`` resource: summary lines, then pinned facts."""
    memory = state.get("memory") or {}
    summary = memory.get("summary") or []
    facts = memory.get("facts") or []
    dropped = memory.get("dropped_summary_lines", 0)
    lines = [f"Summary of {memory.get('summarized_turns', 0)} earlier turn(s)"
             + (f" ({dropped} oldest line(s) dropped; the archive keeps every turn):" if dropped else ":")]
    lines.extend([f"- {line}" for line in summary] or ["(none yet)"])
    lines.extend(["", "Pinned facts:"])
    lines.extend([f"- {fact}" for fact in facts] or ["(none)"])
    return "\n".join(lines) + "\n"


def _goal_view(goal: Mapping[str, Any]) -> dict[str, Any]:
    return {name: goal.get(name) for name in
            ("id", "description", "priority", "target", "status", "progress", "note", "updated")}


# ---------------------------------------------------------------------------------- internals


def _check_event_request(to: Any, type: Any) -> None:
    if not isinstance(to, str) or not _AGENT_ID.match(to):
        raise ContextError(f"invalid recipient {to!r}: an agent id is {ID_RULE}")
    if not isinstance(type, str) or not _EVENT_TYPE.match(type):
        raise ContextError(f"invalid event type {type!r}: 1-200 letters, digits, '.', '_' or '-'")


async def _backend_call(awaitable: Any) -> Any:
    """Await a backend call; anticipated failures become tool errors the model reads."""
    try:
        return await awaitable
    except (ContextError, NotFound, ValueError) as error:
        raise ToolError(str(error)) from None


async def _resource_call(awaitable: Any) -> Any:
    try:
        return await awaitable
    except (ContextError, NotFound, ValueError) as error:
        raise ResourceError(str(error)) from None


def _new_server(agent_id: str, backend: ContextBackend, **kwargs: Any) -> _ContextServer:
    """A ``_ContextServer``, leaving the root logger as it was.

    The SDK's constructor calls ``logging.basicConfig``; in a host process without root handlers
    yet, building an agent's server inside a turn would otherwise install a handler and set the
    root level for the whole process.
    """
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        return _ContextServer(agent_id, backend, **kwargs)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def _client(agent_id: str, backend: ContextBackend) -> Client:
    # mode="legacy": the initialize handshake and JSON-RPC over the SDK's in-memory streams, as
    # with a stdio server; cache=None: each call must reach the server (state changes per turn).
    return Client(build_context_server(agent_id, backend), mode="legacy", cache=None)


def _plain_result(result: Any) -> dict[str, Any]:
    """The same shape as ``mcp_servers.manager`` returns for a tool call."""
    return {
        "content": [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.content],
        "structured_content": result.structured_content,
        "is_error": bool(result.is_error),
    }
