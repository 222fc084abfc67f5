"""Fixtures for the MCP manager tests: real reference servers, built as config objects."""

from __future__ import annotations

import asyncio

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from kernel.config.models import McpServerConfig
from mcp_servers.manager import SupervisorPolicy

REPO = Path(__file__).resolve().parents[2]
SERVERS = Path(__file__).resolve().parent / "servers"
NODE_MODULES = REPO / "node_modules" / "@modelcontextprotocol"

#: Fast restarts for tests; the circuit opens after 3 consecutive failures.
FAST = SupervisorPolicy(backoff_initial=0.05, backoff_max=0.2, failure_threshold=3, cooldown_seconds=30,
                        liveness_interval=0.05)


def node_server(server_id: str, package: str, *args: str, **fields) -> McpServerConfig:
    script = NODE_MODULES / f"server-{package}" / "dist" / "index.js"
    return McpServerConfig(id=server_id, transport="stdio", command="node", args=[str(script), *args], **fields)


def flaky_server(server_id: str = "flaky", **fields) -> McpServerConfig:
    return McpServerConfig(
        id=server_id, transport="stdio", command=sys.executable, args=[str(SERVERS / "flaky_stdio.py")], **fields
    )


def _children() -> list[str]:
    """Command lines of this process's live children that are MCP servers started by the manager."""
    found = []
    me = str(os.getpid())
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[1] == me and fields[0] != "Z" and ("node" in cmdline or "flaky_stdio" in cmdline):
            found.append(cmdline)
    return found


@pytest.fixture(autouse=True)
def no_leftover_servers():
    before = set(_children())  # other suites' fixtures (Azurite) may have children of their own
    yield
    deadline = time.monotonic() + 3
    while set(_children()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sorted(set(_children()) - before) == [], "MCP server processes left behind"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def http_server():
    """A streamable HTTP MCP server on a free loopback port; yields (url, token)."""
    port = _free_port()
    token = "tok-" + os.urandom(12).hex()
    env = {"PATH": os.environ.get("PATH", ""), "EXPECTED_TOKEN": token}
    process = subprocess.Popen([sys.executable, str(SERVERS / "http_server.py"), str(port)], env=env)
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the test HTTP MCP server did not start")
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}/mcp", token
    finally:
        process.terminate()
        process.wait(timeout=10)


# ----------------------------------------------------------------------------------------- tests

import json
import logging

from kernel.config.references import environment_lookup
from mcp_servers.manager import (
    CIRCUIT_OPEN,
    DISABLED,
    READY,
    InvalidArguments,
    McpServerManager,
    ServerUnavailable,
    ToolCallFailed,
    ToolNotFound,
    ToolTimeout,
    resolver_from_lookup,
)


def manager(*configs: McpServerConfig, environ: dict[str, str] | None = None) -> McpServerManager:
    resolver = resolver_from_lookup(environment_lookup(environ or {}))
    return McpServerManager(configs, app_root=REPO, resolver=resolver, policy=FAST)


def text_of(result: dict) -> str:
    return "".join(item.get("text", "") for item in result["content"])


async def test_filesystem_write_then_read(tmp_path):
    async with manager(node_server("fs", "filesystem", str(tmp_path))) as mcp:
        names = {tool["name"] for tool in mcp.list_tools("fs")}
        assert {"write_file", "read_text_file"} <= names
        target = tmp_path / "note.txt"
        written = await mcp.call_tool("fs", "write_file", {"path": str(target), "content": "hello aos"})
        assert written["is_error"] is False
        assert target.read_text() == "hello aos"
        read = await mcp.call_tool("fs", "read_text_file", {"path": str(target)})
        assert text_of(read) == "hello aos"
        assert json.dumps(read)  # plain JSON-ready


async def test_memory_create_entities_then_read_graph(tmp_path):
    memory_file = tmp_path / "memory.jsonl"
    config = node_server("memory", "memory", env={"MEMORY_FILE_PATH": str(memory_file)})
    async with manager(config) as mcp:
        entity = {"name": "Ada", "entityType": "person", "observations": ["wrote the first program"]}
        created = await mcp.call_tool("memory", "create_entities", {"entities": [entity]})
        assert created["is_error"] is False
        graph = await mcp.call_tool("memory", "read_graph", {})
        assert "Ada" in json.dumps(graph)
    assert memory_file.exists()


async def test_everything_echo_sum_and_only_declared_environment(monkeypatch):
    monkeypatch.setenv("AOS_LEAK_CANARY", "canary-value-123")
    config = node_server("everything", "everything", "stdio", env={"DECLARED": "yes"})
    async with manager(config) as mcp:
        assert text_of(await mcp.call_tool("everything", "echo", {"message": "hi"})) == "Echo: hi"
        assert "3" in text_of(await mcp.call_tool("everything", "get-sum", {"a": 1, "b": 2}))
        env = json.loads(text_of(await mcp.call_tool("everything", "get-env", {})))
        assert env["DECLARED"] == "yes"
        assert "AOS_LEAK_CANARY" not in env and "HOME" not in env
        assert set(env) <= {"DECLARED", "PATH"} | {k for k in env if k.startswith("NODE")}
        health = mcp.health()["everything"]
        assert health["state"] == READY and health["tool_count"] > 5 and health["restarts"] == 0
        assert await mcp.list_resources("everything")


async def test_include_and_exclude_filters(tmp_path):
    included = node_server("fs", "filesystem", str(tmp_path), tools={"include": ["read_text_file", "write_file"]})
    excluded = node_server("everything", "everything", "stdio", tools={"exclude": ["echo"]})
    async with manager(included, excluded) as mcp:
        assert sorted(t["name"] for t in mcp.list_tools("fs")) == ["read_text_file", "write_file"]
        assert "echo" not in {t["name"] for t in mcp.list_tools("everything")}
        with pytest.raises(ToolNotFound):
            await mcp.call_tool("everything", "echo", {"message": "hi"})
        with pytest.raises(ToolNotFound):
            await mcp.call_tool("fs", "list_directory", {"path": str(tmp_path)})
        await mcp.refresh_tools()
        assert mcp.health()["fs"]["tool_count"] == 2


async def test_schema_violation_is_rejected_before_calling(tmp_path):
    async with manager(node_server("fs", "filesystem", str(tmp_path))) as mcp:
        target = tmp_path / "never.txt"
        with pytest.raises(InvalidArguments) as caught:
            await mcp.call_tool("fs", "write_file", {"path": str(target), "content": 42})
        assert "content" in str(caught.value) and "is not of type 'string'" in str(caught.value)
        with pytest.raises(InvalidArguments, match="'content' is a required property"):
            await mcp.call_tool("fs", "write_file", {"path": str(target)})
        assert not target.exists()


async def test_missing_command_is_unavailable_and_others_run():
    missing = McpServerConfig(id="ghost", transport="stdio", command="/nonexistent/aos-no-such-server")
    async with manager(missing, node_server("everything", "everything", "stdio")) as mcp:
        health = mcp.health()
        assert health["ghost"]["available"] is False
        assert "command not found" in health["ghost"]["last_error"]
        assert health["everything"]["state"] == READY
        with pytest.raises(ServerUnavailable, match="ghost"):
            await mcp.call_tool("ghost", "anything", {})
        assert text_of(await mcp.call_tool("everything", "echo", {"message": "ok"})) == "Echo: ok"


async def test_disabled_server_is_not_started():
    async with manager(flaky_server(enabled=False)) as mcp:
        assert mcp.health()["flaky"]["state"] == DISABLED
        with pytest.raises(ServerUnavailable, match="disabled"):
            await mcp.call_tool("flaky", "add", {"a": 1, "b": 2})
        assert not [c for c in _children() if "flaky_stdio" in c]


async def test_crash_mid_call_fails_cleanly_and_restarts():
    async with manager(flaky_server()) as mcp:
        assert text_of(await mcp.call_tool("flaky", "add", {"a": 2, "b": 3})) == "5"
        with pytest.raises(ToolCallFailed):
            await mcp.call_tool("flaky", "crash", {})
        assert text_of(await mcp.call_tool("flaky", "add", {"a": 1, "b": 1})) == "2"
        health = mcp.health()["flaky"]
        assert health["state"] == READY and health["restarts"] == 1


async def test_error_result_is_not_an_exception():
    async with manager(flaky_server()) as mcp:
        result = await mcp.call_tool("flaky", "fail", {})
        assert result["is_error"] is True and "fail" in text_of(result)


async def test_hanging_call_times_out():
    async with manager(flaky_server(timeouts={"call_seconds": 0.5})) as mcp:
        with pytest.raises(ToolTimeout, match="timed out after 0.5 s"):
            await mcp.call_tool("flaky", "hang", {"seconds": 30})
        assert text_of(await mcp.call_tool("flaky", "add", {"a": 1, "b": 2})) == "3"


async def test_circuit_opens_after_repeated_failures():
    broken = flaky_server("broken", env={"FLAKY_REFUSE_START": "1"})
    async with manager(broken, flaky_server()) as mcp:
        for _ in range(100):
            if mcp.health()["broken"]["state"] == CIRCUIT_OPEN:
                break
            await asyncio.sleep(0.05)
        health = mcp.health()["broken"]
        assert health["state"] == CIRCUIT_OPEN and health["consecutive_failures"] == 3
        assert "exited with code 7" in health["last_error"]
        with pytest.raises(ServerUnavailable, match="circuit open"):
            await mcp.call_tool("broken", "add", {"a": 1, "b": 2})
        assert mcp.health()["flaky"]["state"] == READY


async def test_streamable_http_with_secret_header(http_server, caplog):
    caplog.set_level(logging.DEBUG)
    url, token = http_server
    config = McpServerConfig(
        id="remote", transport="streamable_http", url=url, headers={"Authorization": "Bearer ${secret:remote-token}"}
    )
    async with manager(config, environ={"REMOTE_TOKEN": token}) as mcp:
        assert [t["name"] for t in mcp.list_tools("remote")] == ["greet"]
        assert text_of(await mcp.call_tool("remote", "greet", {"name": "aos"})) == "hello aos"
        with pytest.raises(InvalidArguments) as caught:
            await mcp.call_tool("remote", "greet", {"name": 5})
        health = mcp.health()
    assert health["remote"]["state"] == READY
    assert token not in json.dumps(health) and token not in str(caught.value)
    assert token not in caplog.text


async def test_wrong_or_unresolvable_secret_is_unavailable_others_run(http_server, caplog):
    caplog.set_level(logging.DEBUG)
    url, token = http_server
    unresolved = McpServerConfig(
        id="remote", transport="streamable_http", url=url, headers={"Authorization": "Bearer ${secret:missing-token}"}
    )
    wrong = McpServerConfig(
        id="wrong", transport="streamable_http", url=url, headers={"Authorization": "Bearer ${secret:wrong-token}"}
    )
    async with manager(unresolved, wrong, flaky_server(), environ={"WRONG_TOKEN": "wrong-secret-xyz"}) as mcp:
        health = mcp.health()
        assert health["remote"]["available"] is False
        assert "${secret:missing-token} is not set" in health["remote"]["last_error"]
        assert health["wrong"]["available"] is False
        assert health["flaky"]["state"] == READY
        assert text_of(await mcp.call_tool("flaky", "add", {"a": 1, "b": 2})) == "3"
    assert "wrong-secret-xyz" not in json.dumps(health) and "wrong-secret-xyz" not in caplog.text
