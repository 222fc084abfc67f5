"""`aos run` and the commands that talk to it, as a user runs them (real processes, real HTTP)."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
AOS = [sys.executable, "-m", "kernel.cli"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOS_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _aos(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AOS, *args], cwd=REPO, env=_env(), capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_run_demo_prints_every_turn_and_exits_when_idle(tmp_path: Path) -> None:
    result = _aos("run", "--demo", "--exit-when-idle", "--port", "0", "--state", str(tmp_path / "state"), timeout=240)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "offline (endpoint 'local-lora' is disabled)" in out and "offline replies are labelled [offline]" in out
    assert "Demo done: 6 turn(s)" in out
    assert out.count("── turn ") == 6
    assert "cto ← pricing.question from api  →  DECLINED" in out and "outside this agent's scope" in out
    assert "tool     memory.create_entities → ok" in out
    assert "tool     filesystem.read_text_file → ok: # Incident response runbook" in out
    assert "operations ← decision.approved from ceo" in out, "the CEO's event reached the operations agent"
    assert "pinned   The board wants the quarterly priorities" in out
    assert "[offline]" in out
    assert not (tmp_path / "state" / "run.json").exists(), "the run file goes when the platform stops"


def test_platform_commands_against_a_running_platform(tmp_path: Path) -> None:
    port = _free_port()
    state = tmp_path / "state"
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen([*AOS, "run", "--port", str(port), "--state", str(state)], cwd=REPO, env=_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (state / "run.json").exists():
            assert server.poll() is None, server.stdout.read() if server.stdout else ""
            assert time.monotonic() < deadline, "aos run did not start"
            time.sleep(0.1)
        assert (state / "run.json").stat().st_mode & 0o077 == 0, "the run file holds the key: owner only"
        common = ["--url", url, "--state", str(state)]

        listing = _aos("agents", *common)
        assert listing.returncode == 0, listing.stderr
        assert [line.split()[0] for line in listing.stdout.splitlines()[1:]] == ["acme.cfo", "ceo", "cfo", "coo", "cto", "operations"]

        sent = _aos("send-event", "cfo", "--type", "invoice.received", "--data",
                    '{"vendor": "Fabrikam", "amount_eur": 900}', "--wait", *common)
        assert sent.returncode == 0, sent.stderr
        assert "cfo ← invoice.received from cli  →  REPLIED" in sent.stdout and "[offline]" in sent.stdout

        shown = _aos("agent", "cfo", "--json", *common)
        data = json.loads(shown.stdout)
        assert data["counters"]["turns"] == 1 and data["status"] == "sleeping"

        found = _aos("memory", "cfo", "Fabrikam invoice", *common)
        assert found.returncode == 0 and "invoice.received" in found.stdout

        servers = _aos("mcp", "servers", *common)
        assert servers.returncode == 0, servers.stderr
        states = {line.split()[0]: line.split()[2] for line in servers.stdout.splitlines()[1:]}
        assert states == {"everything": "ready", "filesystem": "ready", "github": "disabled", "memory": "ready"}
        tools = _aos("mcp", "tools", "everything", *common)
        assert tools.returncode == 0 and "echo(message)" in tools.stdout
        echoed = _aos("mcp", "call", "everything", "echo", "--args", '{"message": "from the cli"}', "--as", "cto", *common)
        assert echoed.returncode == 0 and echoed.stdout.strip() == "Echo: from the cli", echoed.stderr
        refused = _aos("mcp", "call", "filesystem", "write_file", "--args", '{"path": "workspace/x.txt", "content": "x"}',
                       "--as", "cto", *common)
        assert refused.returncode != 0 and "denied: agent 'cto' is granted only" in refused.stderr
        assert not (REPO / "workspace" / "x.txt").exists()
        assert "no pending approvals" in _aos("approvals", *common).stdout

        shown = _aos("audit", "show", "cto", *common)
        assert shown.returncode == 0 and "tool.call" in shown.stdout and "tool.denied" in shown.stdout, shown.stderr
        verified = _aos("audit", "verify", *common)
        assert verified.returncode == 0 and "verified:" in verified.stdout, verified.stdout + verified.stderr
        with sqlite3.connect(state / "tables.sqlite") as db:  # someone edits a record behind the platform's back
            (properties,) = db.execute("SELECT properties FROM aos_table_entities WHERE tbl='audit' AND pk='cto' "
                                       "AND rk='000000000001'").fetchone()
            edited = json.loads(properties)
            edited["actor"] = ["s", "someone-else"]
            db.execute("UPDATE aos_table_entities SET properties=? WHERE tbl='audit' AND pk='cto' "
                       "AND rk='000000000001'", (json.dumps(edited),))
        tampered = _aos("audit", "verify", "--agent", "cto", *common)
        assert tampered.returncode == 1 and "BROKEN at seq 1: hash mismatch" in tampered.stdout, tampered.stdout

        paused = _aos("pause", "cfo", *common)
        assert paused.returncode == 0 and "cfo: paused" in paused.stdout
        assert "cfo: sleeping" in _aos("resume", "cfo", *common).stdout

        bad = _aos("send-event", "nobody", "--type", "x.y", *common)
        assert bad.returncode != 0 and "no agent 'nobody' is declared" in bad.stderr

        wrong_key = _aos("agents", "--url", url, "--key", "not-the-key", "--state", str(tmp_path / "elsewhere"))
        assert wrong_key.returncode != 0 and "401" in wrong_key.stderr and "not-the-key" not in wrong_key.stderr
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    assert not (state / "run.json").exists()


def test_commands_explain_when_no_platform_runs(tmp_path: Path) -> None:
    result = _aos("agents", "--url", f"http://127.0.0.1:{_free_port()}", "--state", str(tmp_path))
    assert result.returncode != 0
    assert "cannot reach the platform" in result.stderr and "aos run" in result.stderr


@pytest.mark.parametrize("args", [["run", "--exit-when-idle"]])
def test_run_refuses_exit_when_idle_without_demo(args: list[str]) -> None:
    result = _aos(*args)
    assert result.returncode != 0 and "--exit-when-idle goes with --demo" in result.stderr
