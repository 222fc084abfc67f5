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


def python_server(server_id: str, script: str, **fields) -> McpServerConfig:
    """One of the small python stdio servers in tests/mcp/servers/."""
    return McpServerConfig(
        id=server_id, transport="stdio", command=sys.executable, args=[str(SERVERS / script)], **fields
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
        if fields[1] == me and fields[0] != "Z" and ("node" in cmdline or "_stdio.py" in cmdline):
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

import dataclasses
import json
import logging
from datetime import datetime, timedelta, timezone

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


def manager(*configs: McpServerConfig, environ: dict[str, str] | None = None,
            policy: SupervisorPolicy = FAST) -> McpServerManager:
    resolver = resolver_from_lookup(environment_lookup(environ or {}))
    return McpServerManager(configs, app_root=REPO, resolver=resolver, policy=policy)


def text_of(result: dict) -> str:
    return "".join(item.get("text", "") for item in result["content"])


async def until(condition, seconds: float = 20.0) -> None:
    """Poll ``condition`` until it holds; fail the test after ``seconds``."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the condition did not hold in time"
        await asyncio.sleep(0.05)


def utc(text: str) -> datetime:
    """An ISO timestamp from health, which must be timezone-aware UTC."""
    moment = datetime.fromisoformat(text)
    assert moment.utcoffset() == timedelta(0)
    return moment


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
        assert health["circuit_open_until"] is None
        assert utc(health["tools_refreshed_at"]) <= datetime.now(timezone.utc)
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
        await until(lambda: mcp.health()["broken"]["state"] == CIRCUIT_OPEN)
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


# ------------------------------------------------------------ references in command, args, cwd


async def test_references_in_command_args_and_cwd_are_resolved_and_redacted(tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    marker = "marker-" + os.urandom(8).hex()
    (tmp_path / "work").mkdir()
    environ = {"AOS_PYTHON": sys.executable, "AOS_SERVERS": str(SERVERS), "AOS_STATE_DIR": str(tmp_path),
               "CRASH_MARKER": marker}
    config = McpServerConfig(
        id="crashy", transport="stdio", command="${env:AOS_PYTHON}",
        args=["${env:AOS_SERVERS}/crashing_stdio.py", "--marker=${secret:crash-marker}"],
        cwd="${env:AOS_STATE_DIR}/work",
    )
    no_restart = dataclasses.replace(FAST, backoff_initial=60, backoff_max=60)  # keep the crash's error
    async with manager(config, environ=environ, policy=no_restart) as mcp:
        where = json.loads(text_of(await mcp.call_tool("crashy", "where", {})))
        # the child got the secret (else the literal reference would show), and its echo comes back masked
        assert where["argv"] == ["--marker=[redacted]"]
        assert Path(where["cwd"]).resolve() == (tmp_path / "work").resolve()
        with pytest.raises(ToolCallFailed) as caught:
            await mcp.call_tool("crashy", "crash", {})
        await until(lambda: "crashing on purpose" in (mcp.health()["crashy"]["last_error"] or ""))
        health = json.dumps(mcp.health())
    assert "[redacted]" in health and "exited with code 5" in health
    for value in (marker, str(tmp_path), sys.executable):
        assert value not in health and value not in str(caught.value) and value not in caplog.text


async def test_unresolvable_reference_in_command_args_or_cwd_is_unavailable_others_run():
    environ = {"AOS_SERVERS": str(SERVERS)}
    in_args = python_server("in-args", "crashing_stdio.py")
    in_args = in_args.model_copy(update={"args": ["${env:AOS_SERVERS}/crashing_stdio.py", "${env:AOS_NOT_SET}/data"]})
    in_cwd = python_server("in-cwd", "crashing_stdio.py", cwd="${env:AOS_NO_DIR}")
    in_command = McpServerConfig(id="in-command", transport="stdio", command="${secret:no-such-python}")
    async with manager(in_args, in_cwd, in_command, flaky_server(), environ=environ) as mcp:
        health = mcp.health()
        assert not any(health[name]["available"] for name in ("in-args", "in-cwd", "in-command"))
        assert "args[1]: ${env:AOS_NOT_SET} is not set" in health["in-args"]["last_error"]
        assert "cwd: ${env:AOS_NO_DIR} is not set" in health["in-cwd"]["last_error"]
        assert "command: ${secret:no-such-python} is not set" in health["in-command"]["last_error"]
        assert str(SERVERS) not in json.dumps(health)
        with pytest.raises(ServerUnavailable, match=r"\$\{env:AOS_NOT_SET\}"):
            await mcp.call_tool("in-args", "ok", {})
        assert health["flaky"]["state"] == READY
        assert text_of(await mcp.call_tool("flaky", "add", {"a": 1, "b": 2})) == "3"


# ------------------------------------------------------------------- breaker: breaks after ready


async def test_crash_on_every_call_opens_the_circuit_and_an_answer_resets_the_streak():
    policy = dataclasses.replace(FAST, failure_threshold=2)
    async with manager(python_server("crashy", "crashing_stdio.py"), flaky_server(), policy=policy) as mcp:
        with pytest.raises(ToolCallFailed):
            await mcp.call_tool("crashy", "crash", {})
        await until(lambda: mcp.health()["crashy"]["consecutive_failures"] == 1)
        assert text_of(await mcp.call_tool("crashy", "ok", {})) == "fine"  # waits for the restart
        assert mcp.health()["crashy"]["consecutive_failures"] == 0
        for _ in range(2):  # without the reset above, the first of these would open the circuit
            with pytest.raises(ToolCallFailed):
                await mcp.call_tool("crashy", "crash", {})
        with pytest.raises(ServerUnavailable, match="circuit open after 2 consecutive failures") as caught:
            await mcp.call_tool("crashy", "ok", {})
        assert "exited with code 5" in str(caught.value) and "crashing on purpose" in str(caught.value)
        health = mcp.health()
        crashy = health["crashy"]
        assert crashy["state"] == CIRCUIT_OPEN and crashy["restarts"] == 2 and crashy["available"] is False
        assert utc(crashy["circuit_open_until"]) > datetime.now(timezone.utc) + timedelta(seconds=20)
        assert not [c for c in _children() if "crashing_stdio" in c]  # not restarted while open
        assert health["flaky"]["state"] == READY and health["flaky"]["circuit_open_until"] is None


async def test_idle_exit_soon_after_ready_counts_but_after_a_stable_run_does_not(caplog):
    caplog.set_level(logging.INFO, logger="mcp_servers")
    early = python_server("early", "crashing_stdio.py", env={"CRASHING_EXIT_AFTER": "0.3"})
    late = python_server("late", "crashing_stdio.py", env={"CRASHING_EXIT_AFTER": "0.3"})
    counting = dataclasses.replace(FAST, failure_threshold=2)  # stable after the default 30 s
    lenient = dataclasses.replace(FAST, failure_threshold=2, stable_seconds=0.1)
    first, second = manager(early, policy=counting), manager(late, policy=lenient)
    await asyncio.gather(first.start(), second.start())
    try:
        await until(lambda: first.health()["early"]["state"] == CIRCUIT_OPEN)
        assert "exited with code 4" in first.health()["early"]["last_error"]
        assert caplog.text.count("MCP server early ready") == 2  # each run got ready, then died idle
        await until(lambda: second.health()["late"]["restarts"] >= 1)
        late_health = second.health()["late"]  # an idle exit after a stable run: not counted
        assert late_health["state"] != CIRCUIT_OPEN and late_health["consecutive_failures"] == 0
        assert "MCP server late stopped after a stable run: process exited with code 4" in caplog.text
    finally:
        await asyncio.gather(first.close(), second.close())


async def test_protocol_error_fails_the_call_but_keeps_the_session():
    async with manager(flaky_server()) as mcp:
        with pytest.raises(ToolCallFailed, match="Unknown resource"):
            await mcp.read_resource("flaky", "file:///nope")
        health = mcp.health()["flaky"]
        assert health["state"] == READY and health["restarts"] == 0 and health["consecutive_failures"] == 0
        assert text_of(await mcp.call_tool("flaky", "add", {"a": 2, "b": 2})) == "4"


# ------------------------------------------------------------------------------- tool refresh


async def test_tools_are_listed_again_when_the_server_says_they_changed():
    config = python_server("changing", "changing_stdio.py", tools={"exclude": ["added_hidden"]})
    async with manager(config) as mcp:  # the periodic refresh is 300 s away: only the notice helps
        assert {t["name"] for t in mcp.list_tools("changing")} == {"doomed", "grow"}
        listed_at = utc(mcp.health()["changing"]["tools_refreshed_at"])
        assert text_of(await mcp.call_tool("changing", "grow", {})) == "grown"
        await until(lambda: "added" in {t["name"] for t in mcp.list_tools("changing")})
        assert {t["name"] for t in mcp.list_tools("changing")} == {"added", "grow"}
        health = mcp.health()["changing"]
        assert health["tool_count"] == 2 and utc(health["tools_refreshed_at"]) > listed_at
        assert text_of(await mcp.call_tool("changing", "added", {"text": "x"})) == "added: x"
        with pytest.raises(InvalidArguments, match="'text' is a required property"):
            await mcp.call_tool("changing", "added", {})
        with pytest.raises(ToolNotFound):
            await mcp.call_tool("changing", "doomed", {})
        with pytest.raises(ToolNotFound):
            await mcp.call_tool("changing", "added_hidden", {})


async def test_tools_are_listed_again_periodically():
    config = python_server("silent", "changing_stdio.py", env={"CHANGING_SILENT": "1"},
                           tools={"exclude": ["added_hidden"]})
    async with manager(config, policy=dataclasses.replace(FAST, refresh_interval=0.3)) as mcp:
        assert text_of(await mcp.call_tool("silent", "grow", {})) == "grown"
        await until(lambda: "added" in {t["name"] for t in mcp.list_tools("silent")})
        assert {t["name"] for t in mcp.list_tools("silent")} == {"added", "grow"}
        assert text_of(await mcp.call_tool("silent", "added", {"text": "y"})) == "added: y"
        assert mcp.health()["silent"]["restarts"] == 0
