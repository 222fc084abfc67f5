"""The agent's context MCP server, always through the real MCP protocol.

In-memory tests use the SDK's in-memory transport (JSON-RPC over memory streams) with a
``SnapshotBackend`` over a real archive on the embedded adapters. The stdio test launches
``python -m realm_of_agents.context_cli`` (the ``aos context-mcp`` command) as a subprocess and
talks to it with ``mcp.client.stdio``; its ``HttpBackend`` calls a FAKE PLATFORM: a tiny aiohttp
server on loopback serving the platform's agent routes with canned JSON (the real routes are
built separately).
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from copy import deepcopy
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from mcp import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from kernel.adapters.embedded_blob import EmbeddedBlobStore
from kernel.adapters.embedded_table import EmbeddedTableStore
from realm_of_agents.agent_state import new_state
from realm_of_agents.archive import TurnArchive
from realm_of_agents.context_server import (
    SERVER_ID,
    TOOL_NAMES,
    SnapshotBackend,
    build_context_server,
    call_context_tool,
    list_context_tools,
)
from realm_of_agents.memory import digest

REPO = Path(__file__).resolve().parents[2]
TURN_ID = "turn-cfo-00000000000000a1"


def archived_turn() -> dict[str, Any]:
    return {
        "agent_id": "cfo",
        "turn_id": TURN_ID,
        "config_version": "3",
        "event": {"id": "evt-a1", "type": "finance.invoice.received", "source": "erp",
                  "time": "2026-11-21T09:00:00+00:00", "data": {"vendor": "Northwind", "invoice": "INV-0042"}},
        "started": "2026-11-21T09:00:00+00:00",
        "finished": "2026-11-21T09:00:04+00:00",
        "outcome": "replied",
        "alignment": {"aligned": True, "score": 0.6, "reason": "subscribed", "method": "lexical"},
        "steps": [{"kind": "tool", "index": 0, "server": "erp", "tool": "lookup", "arguments": {}, "result": {}}],
        "reply": "Northwind invoice INV-0042 approved.",
        "decision": {"action": "reply", "rationale": "matches the purchase order"},
        "error": None,
        "outputs": [],
    }


def agent_state() -> dict[str, Any]:
    state = new_state("cfo")
    state["goals"] = [
        {"id": "close-q4", "description": "Close the Q4 books", "priority": 1, "target": "2027-01-15",
         "status": "active", "progress": 40, "note": None, "updated": "2026-11-20T00:00:00+00:00"},
        {"id": "cut-costs", "description": "Cut cloud costs", "priority": 2, "target": None,
         "status": "active", "progress": 0, "note": None, "updated": "2026-11-20T00:00:00+00:00"},
    ]
    state["memory"]["window"] = [digest("turn-cfo-00000000000000b2", "2026-11-21T10:00:00+00:00",
                                        "finance.payment.due", "replied", "Payment to Fabrikam scheduled for Friday.")]
    state["memory"]["summary"] = ["2026-11-19T08:00 finance.budget.review (replied): Travel budget trimmed"]
    state["memory"]["summarized_turns"] = 1
    state["memory"]["facts"] = ["Northwind invoices need two approvals"]
    return state


@pytest.fixture
async def backend(tmp_path: Path):
    blobs = EmbeddedBlobStore(tmp_path / "blobs")
    tables = EmbeddedTableStore(tmp_path / "tables.sqlite")
    archive = TurnArchive(blobs, tables)
    await archive.save(archived_turn())
    yield SnapshotBackend(agent_state(), archive)
    await blobs.close()
    await tables.close()


def text_of(result: dict[str, Any]) -> str:
    return "\n".join(item["text"] for item in result["content"] if item["type"] == "text")


async def test_lists_the_six_tools_with_schemas(backend: SnapshotBackend) -> None:
    tools = {tool["name"]: tool for tool in await list_context_tools("cfo", backend)}
    assert set(tools) == set(TOOL_NAMES) == {
        "search_memory", "read_turn", "list_goals", "remember_fact", "update_goal", "send_event"}
    assert SERVER_ID == "context"
    for tool in tools.values():
        assert tool["description"]
        assert tool["input_schema"]["type"] == "object"
        assert "ctx" not in tool["input_schema"].get("properties", {})
    assert tools["search_memory"]["input_schema"]["required"] == ["query"]
    assert tools["read_turn"]["input_schema"]["required"] == ["turn_id"]
    update = tools["update_goal"]["input_schema"]
    assert sorted(update["required"]) == ["action", "goal_id"]
    assert update["properties"]["action"]["enum"] == ["progress", "complete", "abandon"]
    assert sorted(tools["send_event"]["input_schema"]["required"]) == ["to", "type"]


async def test_search_memory_finds_the_archived_turn_and_the_fact_separately(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "search_memory", {"query": "Northwind approvals"})
    assert result["is_error"] is False
    found = result["structured_content"]
    assert json.loads(text_of(result)) == found  # the text content is the same JSON
    assert [hit["turn_id"] for hit in found["archive"]] == [TURN_ID]
    assert found["archive"][0]["score"] == 0.5
    assert found["hot_memory"] == [{"source": "fact", "text": "Northwind invoices need two approvals", "score": 1.0}]

    window = (await call_context_tool("cfo", backend, "search_memory", {"query": "Fabrikam payment"}))["structured_content"]
    assert window["archive"] == []
    assert window["hot_memory"][0]["source"] == "window"
    assert window["hot_memory"][0]["turn_id"] == "turn-cfo-00000000000000b2"
    summary = (await call_context_tool("cfo", backend, "search_memory", {"query": "travel"}))["structured_content"]
    assert [hit["source"] for hit in summary["hot_memory"]] == ["summary"]


async def test_search_memory_without_words_is_a_tool_error(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "search_memory", {"query": "the and of"})
    assert result["is_error"] is True
    assert "no searchable words" in text_of(result)


async def test_read_turn_returns_the_archived_turn(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "read_turn", {"turn_id": TURN_ID})
    assert result["is_error"] is False
    assert result["structured_content"] == archived_turn()


async def test_read_turn_unknown_is_a_tool_error_with_a_message(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "read_turn", {"turn_id": "turn-cfo-nope"})
    assert result["is_error"] is True
    assert result["structured_content"] is None
    assert "agent 'cfo' has no archived turn 'turn-cfo-nope'" in text_of(result)
    bad = await call_context_tool("cfo", backend, "read_turn", {"turn_id": "../etc"})
    assert bad["is_error"] is True and "invalid turn id '../etc'" in text_of(bad)


async def test_list_goals_shows_status_and_progress(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "list_goals", {})
    goals = result["structured_content"]["goals"]
    assert [(g["id"], g["status"], g["progress"]) for g in goals] == [("close-q4", "active", 40), ("cut-costs", "active", 0)]


async def test_update_goal_unknown_goal_lists_the_known_ones(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "update_goal", {"goal_id": "hire", "action": "complete"})
    assert result["is_error"] is True
    assert "agent 'cfo' has no goal 'hire'; its goals are: 'close-q4', 'cut-costs'" in text_of(result)


async def test_update_goal_is_accepted_for_the_end_of_the_turn(backend: SnapshotBackend) -> None:
    before = deepcopy(await backend.state("cfo"))
    result = await call_context_tool("cfo", backend, "update_goal",
                                     {"goal_id": "close-q4", "action": "progress", "progress": 60, "note": "AP done"})
    assert result["is_error"] is False
    answer = result["structured_content"]
    assert answer["accepted"] is True and answer["applies"] == "at the end of this turn"
    assert answer["change"] == {"action": "progress", "progress": 60, "note": "AP done"}
    assert await backend.state("cfo") == before  # nothing written mid-turn

    out_of_range = await call_context_tool("cfo", backend, "update_goal",
                                           {"goal_id": "close-q4", "action": "progress", "progress": 140})
    assert out_of_range["is_error"] is True and "progress" in text_of(out_of_range)
    empty = await call_context_tool("cfo", backend, "update_goal", {"goal_id": "close-q4", "action": "progress"})
    assert empty["is_error"] is True and "needs a progress value" in text_of(empty)
    bad_action = await call_context_tool("cfo", backend, "update_goal", {"goal_id": "close-q4", "action": "add"})
    assert bad_action["is_error"] is True


async def test_remember_fact_is_accepted(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "remember_fact", {"fact": "  Fabrikam  offers 2% early-payment discount "})
    assert result["is_error"] is False
    assert result["structured_content"] == {"accepted": True, "applies": "at the end of this turn",
                                            "fact": "Fabrikam offers 2% early-payment discount"}
    again = await call_context_tool("cfo", backend, "remember_fact", {"fact": "Northwind invoices need two approvals"})
    assert again["structured_content"]["already_pinned"] is True
    assert "Fabrikam offers" not in " ".join((await backend.state("cfo"))["memory"]["facts"])
    blank = await call_context_tool("cfo", backend, "remember_fact", {"fact": "   "})
    assert blank["is_error"] is True and "needs some text" in text_of(blank)


async def test_send_event_is_accepted_and_validated(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "send_event",
                                     {"to": "treasury", "type": "finance.payment.requested", "data": {"amount": 1200}})
    assert result["structured_content"] == {"accepted": True, "applies": "at the end of this turn",
                                            "to": "treasury", "type": "finance.payment.requested", "source": "cfo"}
    bad = await call_context_tool("cfo", backend, "send_event", {"to": "Treasury!", "type": "x"})
    assert bad["is_error"] is True and "invalid recipient 'Treasury!'" in text_of(bad)


async def test_unknown_tool_is_a_tool_error(backend: SnapshotBackend) -> None:
    result = await call_context_tool("cfo", backend, "forget_everything", {})
    assert result["is_error"] is True and "forget_everything" in text_of(result)


async def test_a_snapshot_serves_only_its_own_agent(backend: SnapshotBackend) -> None:
    result = await call_context_tool("hr", backend, "list_goals", {})
    assert result["is_error"] is True and "belongs to agent 'cfo', not 'hr'" in text_of(result)


async def test_resources_are_readable(backend: SnapshotBackend) -> None:
    async with Client(build_context_server("cfo", backend), mode="legacy", cache=None) as client:
        listed = {str(r.uri): r for r in (await client.list_resources()).resources}
        assert set(listed) == {"agent://cfo/summary", "agent://cfo/goals"}
        summary = (await client.read_resource("agent://cfo/summary")).contents[0]
        goals = (await client.read_resource("agent://cfo/goals")).contents[0]
    assert summary.mime_type == "text/plain"
    assert "Travel budget trimmed" in summary.text and "Northwind invoices need two approvals" in summary.text
    assert goals.mime_type == "application/json"
    assert [g["id"] for g in json.loads(goals.text)["goals"]] == ["close-q4", "cut-costs"]


async def test_building_servers_leaves_the_root_logger_alone(backend: SnapshotBackend) -> None:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    await call_context_tool("cfo", backend, "list_goals", {})
    assert (root.handlers, root.level) == (handlers, level)


def test_bad_agent_id_is_refused(backend: SnapshotBackend) -> None:
    with pytest.raises(ValueError, match="invalid agent id 'CFO'"):
        build_context_server("CFO", backend)


# -------------------------------------------- stdio, against a FAKE PLATFORM on loopback

KEY = "test-key-7f3a"


class FakePlatform:
    """Canned answers on the platform's agent routes; records what the backend asked."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, Any]] = []
        self.app = web.Application(middlewares=[self._auth])
        self.app.add_routes([
            web.get("/api/agents/{agent}", self.state),
            web.get("/api/agents/{agent}/memory", self.memory),
            web.get("/api/agents/{agent}/turns/{turn}", self.turn),
            web.post("/api/agents/{agent}/facts", self.facts),
            web.post("/api/agents/{agent}/goals/{goal}", self.goal),
            web.post("/api/agents/{agent}/events", self.events),
        ])

    @web.middleware
    async def _auth(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("x-functions-key") != KEY:
            return web.json_response({"error": "a function key is required"}, status=401)
        body = await request.json() if request.method == "POST" else dict(request.query)
        self.requests.append((request.method, request.path, body))
        return await handler(request)

    async def state(self, request: web.Request) -> web.Response:
        return web.json_response(agent_state())

    async def memory(self, request: web.Request) -> web.Response:
        hit = {"turn_id": TURN_ID, "time": "2026-11-21T09:00:04+00:00", "event_type": "finance.invoice.received",
               "event_id": "evt-a1", "outcome": "replied", "text": "Northwind invoice", "tool_calls": 1, "score": 1.0}
        return web.json_response({"results": [hit]})

    async def turn(self, request: web.Request) -> web.Response:
        if request.match_info["turn"] != TURN_ID:
            return web.json_response({"error": f"no turn '{request.match_info['turn']}'"}, status=404)
        return web.json_response(archived_turn())

    async def facts(self, request: web.Request) -> web.Response:
        return web.json_response({"pinned": True})

    async def goal(self, request: web.Request) -> web.Response:
        if request.match_info["goal"] != "close-q4":
            return web.json_response({"error": f"no goal '{request.match_info['goal']}'"}, status=404)
        return web.json_response({"goal": {"id": "close-q4", "status": "completed", "progress": 100}})

    async def events(self, request: web.Request) -> web.Response:
        return web.json_response({"accepted": True, "id": "evt-new"}, status=202)


@pytest.fixture
async def fake_platform():
    platform = FakePlatform()
    runner = web.AppRunner(platform.app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield platform, f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def test_aos_context_mcp_over_real_stdio_against_a_fake_platform(fake_platform) -> None:
    platform, url = fake_platform
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "realm_of_agents.context_cli", "cfo", "--url", url, "--key", KEY],
        cwd=str(REPO),
    )
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                tools = {tool.name for tool in (await session.list_tools()).tools}
                search = await session.call_tool("search_memory", {"query": "Northwind", "limit": 3})
                turn = await session.call_tool("read_turn", {"turn_id": TURN_ID})
                missing = await session.call_tool("read_turn", {"turn_id": "turn-cfo-gone"})
                fact = await session.call_tool("remember_fact", {"fact": "Quarter closes on the 15th"})
                goal = await session.call_tool("update_goal", {"goal_id": "close-q4", "action": "complete"})
                unknown_goal = await session.call_tool("update_goal", {"goal_id": "hire", "action": "abandon"})
                sent = await session.call_tool("send_event", {"to": "treasury", "type": "finance.payment.requested",
                                                              "data": {"amount": 5}})
                summary = await session.read_resource("agent://cfo/summary")
        errlog.seek(0)
        stderr = errlog.read()

    assert tools == set(TOOL_NAMES)
    assert not search.is_error
    assert search.structured_content["archive"][0]["turn_id"] == TURN_ID
    assert search.structured_content["hot_memory"][0]["text"] == "Northwind invoices need two approvals"
    assert turn.structured_content == archived_turn()
    assert missing.is_error
    assert "GET /api/agents/cfo/turns/turn-cfo-gone failed: HTTP 404" in missing.content[0].text
    assert "no turn 'turn-cfo-gone'" in missing.content[0].text
    assert fact.structured_content == {"pinned": True}
    assert goal.structured_content["goal"]["status"] == "completed"
    assert unknown_goal.is_error and "POST /api/agents/cfo/goals/hire failed: HTTP 404" in unknown_goal.content[0].text
    assert sent.structured_content == {"accepted": True, "id": "evt-new"}
    assert "Northwind invoices need two approvals" in summary.contents[0].text

    assert ("GET", "/api/agents/cfo/memory", {"q": "Northwind", "limit": "3"}) in platform.requests
    assert ("POST", "/api/agents/cfo/facts", {"fact": "Quarter closes on the 15th"}) in platform.requests
    assert ("POST", "/api/agents/cfo/goals/close-q4", {"action": "complete"}) in platform.requests
    assert ("POST", "/api/agents/treasury/events",
            {"type": "finance.payment.requested", "data": {"amount": 5}, "source": "cfo"}) in platform.requests
    for result in (search, turn, missing, fact, goal, unknown_goal, sent):
        assert KEY not in json.dumps(result.model_dump(mode="json"))
    assert KEY not in stderr


async def test_http_errors_name_the_path_but_never_the_key(fake_platform) -> None:
    from realm_of_agents.context_cli import HttpBackend

    _, url = fake_platform
    async with HttpBackend(url, key="wrong-secret-key") as backend:
        result = await call_context_tool("cfo", backend, "list_goals", {})
    assert result["is_error"] is True
    message = text_of(result)
    assert "GET /api/agents/cfo failed: HTTP 401" in message and "a function key is required" in message
    assert "wrong-secret-key" not in message

    async with HttpBackend("http://127.0.0.1:9", key="wrong-secret-key") as backend:  # nothing listens on port 9
        unreachable = await call_context_tool("cfo", backend, "read_turn", {"turn_id": TURN_ID})
    assert unreachable["is_error"] is True
    assert f"GET /api/agents/cfo/turns/{TURN_ID}: cannot reach the platform at http://127.0.0.1:9" in text_of(unreachable)
