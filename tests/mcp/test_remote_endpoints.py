"""The platform's own tools over MCP: the engine's /runtime/webhooks/mcp, reached with the mcp SDK.

The platform tests start the whole app (all roles, plus ``mcp_servers.remote`` until the mcp
role registers it) on the embedded engine with the test agent ``clerk``, and talk to it the way
an IDE or the MCP inspector would: the SDK's streamable HTTP client over real loopback HTTP,
with the master key in ``x-functions-key``. The offline provider answers every turn. The engine
tests use small apps of their own for what the platform's tools do not exercise.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import aiohttp
import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client
from mcp.shared.exceptions import MCPError

from kernel.engine.host import EmbeddedHost
from kernel.engine.mcp_webhook import MCP_WEBHOOK_PATH
from kernel.platform import Platform
from kernel.settings import APP_ROOT
from tests.realm.platform_support import finished_turn, ok, running

CLERK = str(APP_ROOT / "tests" / "realm" / "configs" / "clerk.yaml")
ENGINE_APPS = APP_ROOT / "tests" / "engine" / "apps"
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "test", "version": "0"}}}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}

#: A fresh run of function_app.py (its own app object) plus the remote tools, added only while the
#: mcp role does not register them itself (the SDK has no public list of registered functions).
PLATFORM_APP = """
import runpy

from kernel.settings import APP_ROOT
from mcp_servers import remote

app = runpy.run_path(str(APP_ROOT / "function_app.py"))["app"]
if not any(fb._function.get_function_name() == "ask_agent" for fb in app._function_builders):
    app.register_functions(remote.bp)
"""


@pytest.fixture
def platform_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Run the platform on a copy of the app that serves the remote tools (with the repo's host.json)."""
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "remote_tools_app.py").write_text(PLATFORM_APP)
    shutil.copy(APP_ROOT / "host.json", folder / "host.json")
    monkeypatch.setattr("kernel.platform.APP", folder / "remote_tools_app.py")
    return folder


@contextlib.asynccontextmanager
async def mcp_session(url: str, key: str) -> AsyncIterator[ClientSession]:
    """An initialized SDK client session over streamable HTTP, authenticated like a Functions client."""
    async with create_mcp_http_client(headers={"x-functions-key": key}) as http:
        async with streamable_http_client(url, http_client=http) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                yield session


def endpoint(platform: Platform | EmbeddedHost) -> str:
    return platform.base_url + MCP_WEBHOOK_PATH


def text(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def answer(result: types.CallToolResult) -> dict[str, Any]:
    """A successful call's structured content, which its text repeats as JSON."""
    assert not result.is_error, text(result)
    assert result.structured_content == json.loads(text(result))
    return result.structured_content


async def post(url: str, body: Any, headers: dict[str, str]) -> tuple[int, str]:
    async with aiohttp.ClientSession() as http:
        async with http.post(url, json=body, headers={**MCP_HEADERS, **headers}) as response:
            return response.status, await response.text()


# -- the platform's tools ---------------------------------------------------------------------------


async def test_the_three_tools_are_listed_with_their_schemas_and_the_endpoint_needs_a_key(
        tmp_path: Path, platform_app: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        async with mcp_session(endpoint(platform), platform.key) as session:
            listing = await session.list_tools()
        tools = {tool.name: tool for tool in listing.tools}
        assert set(tools) == {"ask_agent", "send_event", "search_agent_memory"}
        ask = tools["ask_agent"].input_schema
        assert ask["type"] == "object" and ask["required"] == ["agent_id"]
        assert {name: spec["type"] for name, spec in ask["properties"].items()} == {
            "agent_id": "string", "text": "string", "data": "object", "type": "string", "timeout_seconds": "number"}
        assert all(spec["description"] for spec in ask["properties"].values())
        assert tools["send_event"].input_schema["required"] == ["type"]
        assert tools["search_agent_memory"].input_schema["required"] == ["agent_id", "query"]
        assert tools["search_agent_memory"].input_schema["properties"]["limit"]["type"] == "integer"
        assert "wait" in (tools["ask_agent"].description or "")

        status, body = await post(endpoint(platform), INITIALIZE, {})
        assert status == 401 and "key" in body
        status, _ = await post(endpoint(platform), INITIALIZE, {"x-functions-key": "not-the-key"})
        assert status == 401
        status, _ = await post(f"{endpoint(platform)}?code={platform.key}", INITIALIZE, {})
        assert status == 200, "the key is also accepted as code="


async def test_send_event_makes_a_turn_happen_and_a_broadcast_wakes_the_subscribers(
        tmp_path: Path, platform_app: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        async with mcp_session(endpoint(platform), platform.key) as session:
            sent = answer(await session.call_tool("send_event", {
                "agent_id": "clerk", "type": "ledger.entry", "data": {"entry": 1, "note": "ledger entry for Fabrikam"}}))
            broadcast = answer(await session.call_tool("send_event", {"type": "ledger.entry", "data": {"entry": 2}}))
            nobody = answer(await session.call_tool("send_event", {"type": "pricing.changed"}))

        assert sent["to"] == "clerk" and sent["type"] == "ledger.entry"
        record = await finished_turn(platform, "clerk", sent["turns"]["clerk"])
        assert record["event"]["id"] == sent["event_id"] and record["event"]["source"] == "mcp"
        assert record["event"]["data"] == {"entry": 1, "note": "ledger entry for Fabrikam"}
        assert record["outcome"] == "replied" and record["reply"].startswith("[offline]")

        assert broadcast["to"] is None and list(broadcast["turns"]) == ["clerk"]
        assert (await finished_turn(platform, "clerk", broadcast["turns"]["clerk"]))["event"]["data"] == {"entry": 2}
        assert nobody["turns"] == {} and "no enabled agent subscribes" in nobody["note"]


async def test_ask_agent_returns_the_reply_and_search_finds_the_turn(tmp_path: Path, platform_app: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        async with mcp_session(endpoint(platform), platform.key) as session:
            asked = answer(await session.call_tool("ask_agent", {
                "agent_id": "clerk", "type": "ledger.entry", "text": "record ledger entry 7 for Contoso"}))
            found = answer(await session.call_tool("search_agent_memory", {"agent_id": "clerk", "query": "Contoso"}))

        assert asked["status"] == "answered" and asked["outcome"] == "replied" and asked["error"] is None
        assert asked["reply"].startswith("[offline]"), "the offline provider answers, labelled"
        record = await ok(platform, "GET", f"agents/clerk/turns/{asked['turn_id']}")
        assert record["event"]["id"] == asked["event_id"] and record["reply"] == asked["reply"]
        assert record["event"]["data"] == {"text": "record ledger entry 7 for Contoso"}

        assert found["agent_id"] == "clerk" and found["query"] == "Contoso"
        [hit] = found["results"]
        assert hit["turn_id"] == asked["turn_id"] and hit["event_type"] == "ledger.entry" and hit["score"] == 1.0


async def test_ask_agent_that_times_out_says_where_to_look_later(tmp_path: Path, platform_app: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        await ok(platform, "POST", "agents/clerk/pause")  # its inbox keeps the event until it resumes
        async with mcp_session(endpoint(platform), platform.key) as session:
            waited = answer(await session.call_tool("ask_agent", {
                "agent_id": "clerk", "type": "ledger.entry", "text": "entry 9", "timeout_seconds": 0.5}))
        assert waited["status"] == "pending" and "outcome" not in waited
        assert waited["event_id"] in waited["message"] and f"/turns/{waited['turn_id']}" in waited["message"]

        await ok(platform, "POST", "agents/clerk/resume")
        record = await finished_turn(platform, "clerk", waited["turn_id"])
        assert record["event"]["id"] == waited["event_id"] and record["outcome"] == "replied"


async def test_bad_arguments_are_error_results_naming_what_was_wrong(tmp_path: Path, platform_app: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        async with mcp_session(endpoint(platform), platform.key) as session:
            missing = await session.call_tool("ask_agent", {"text": "hello"})
            unknown = await session.call_tool("ask_agent", {"agent_id": "nobody", "text": "hello"})
            no_question = await session.call_tool("ask_agent", {"agent_id": "clerk"})
            slow = await session.call_tool("ask_agent", {"agent_id": "clerk", "text": "hi", "timeout_seconds": 900})
            bad_type = await session.call_tool("send_event", {"agent_id": "clerk", "type": "no spaces allowed"})
            stop_words = await session.call_tool("search_agent_memory", {"agent_id": "clerk", "query": "the and"})
            unknown_search = await session.call_tool("search_agent_memory", {"agent_id": "nobody", "query": "ledger"})
            with pytest.raises(MCPError) as no_such_tool:
                await session.call_tool("delete_everything", {})

        for result in (missing, unknown, no_question, slow, bad_type, stop_words, unknown_search):
            assert result.is_error and result.structured_content is None, result
        assert text(missing) == "One or more required tool properties are missing values. Please provide: agent_id"
        assert text(unknown) == "no agent 'nobody' is declared in config (declared: clerk)"
        assert text(unknown_search) == text(unknown)
        assert "'text'" in text(no_question)
        assert "'timeout_seconds'" in text(slow) and "200" in text(slow)
        assert text(bad_type).startswith("invalid event: 'type'")
        assert "no searchable words" in text(stop_words)
        assert no_such_tool.value.code == types.INVALID_PARAMS and "delete_everything" in no_such_tool.value.message
        assert await ok(platform, "GET", "agents/clerk/turns") == {"agent_id": "clerk", "turns": []}, \
            "nothing was sent"


# -- the engine's webhook ---------------------------------------------------------------------------

#: Tool functions as the docs' samples write them: plain string results, one that raises.
ENGINE_APP = """
import json
import azure.functions as func

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
PROPERTIES = json.dumps([
    {"propertyName": "words", "propertyType": "string", "description": "Words.", "isRequired": True, "isArray": True},
    {"propertyName": "shout", "propertyType": "boolean", "description": "Upper case?"},
])


@app.mcp_tool_trigger(arg_name="context", tool_name="join_words", description="Join words.",
                      tool_properties=PROPERTIES)
def join_words(context: str) -> str:
    call = json.loads(context)
    joined = " ".join(call["arguments"]["words"])
    return joined.upper() if call["arguments"].get("shout") else f"{call['name']}: {joined}"


@app.mcp_tool_trigger(arg_name="context", tool_name="fail", description="Always fails.", tool_properties="[]")
async def fail(context: str) -> str:
    raise RuntimeError("the disk is full")
"""


async def test_engine_serves_plain_tool_functions_as_the_extension_does(tmp_path: Path) -> None:
    (tmp_path / "tools_app.py").write_text(ENGINE_APP)
    async with EmbeddedHost(str(tmp_path / "tools_app.py"), settings={"AOS_FUNCTION_KEYS": "fk"}) as host:
        async with mcp_session(endpoint(host), "fk") as session:  # a function key works as well
            initialized = await session.initialize()
            [join, fail] = sorted((await session.list_tools()).tools, key=lambda tool: tool.name != "join_words")
            joined = await session.call_tool("join_words", {"words": ["a", "b"]})
            shouted = await session.call_tool("join_words", {"words": ["a", "b"], "shout": True})
            failed = await session.call_tool("fail", {})
            missing = await session.call_tool("join_words", {"words": None})

    assert initialized.server_info.name == "Azure Functions MCP server"
    assert join.input_schema == {"type": "object", "required": ["words"], "properties": {
        "words": {"type": "array", "items": {"type": "string"}, "description": "Words."},
        "shout": {"type": "boolean", "description": "Upper case?"}}}
    assert fail.input_schema == {"type": "object", "properties": {}, "required": []}
    assert not joined.is_error and text(joined) == "join_words: a b" and joined.structured_content is None
    assert text(shouted) == "A B"
    assert failed.is_error and text(failed) == "tool 'fail' failed: RuntimeError: the disk is full"
    assert missing.is_error and text(missing).endswith("Please provide: words")


async def test_an_app_without_tool_functions_serves_no_mcp_endpoint() -> None:
    async with EmbeddedHost(str(ENGINE_APPS / "chaining.py")) as host:
        status, _ = await post(endpoint(host), INITIALIZE, {"x-functions-key": host.master_key})
    assert status == 404
