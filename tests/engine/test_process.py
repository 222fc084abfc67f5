"""Real processes: SIGKILL mid fan-out then resume from the SQLite file; ``aos host`` / ``aos send``."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import azure.durable_functions as df

from kernel.engine import EmbeddedHost

from .conftest import app_path

ROOT = Path(__file__).resolve().parents[2]
AOS = str(Path(sys.executable).parent / "aos")
COUNT = 60

CHILD = """
import asyncio, sys
sys.path.insert(0, {root!r})
from kernel.engine import EmbeddedHost

async def main():
    async with EmbeddedHost({app!r}, state_path={state!r}, max_concurrent_activities=4) as host:
        await host.client.start_new("crunch", "job", {count})
        await asyncio.sleep(3600)

asyncio.run(main())
"""


def _lines(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


async def test_sigkill_mid_fan_out_loses_nothing(tmp_path: Path, monkeypatch) -> None:
    state, log = tmp_path / "state.sqlite", tmp_path / "activities.log"
    monkeypatch.setenv("AOS_TEST_LOG", str(log))
    script = CHILD.format(root=str(ROOT), app=app_path("durable_work"), state=str(state), count=COUNT)
    child = subprocess.Popen([sys.executable, "-c", script], env={**os.environ}, cwd=str(tmp_path))
    try:
        deadline = time.monotonic() + 20
        while len(_lines(log)) < 12:
            assert child.poll() is None, "the child process died on its own"
            assert time.monotonic() < deadline, "the child made no progress"
            await asyncio.sleep(0.02)
        child.send_signal(signal.SIGKILL)
        child.wait(10)
    finally:
        if child.poll() is None:
            child.kill()
    done_before = len(_lines(log))
    assert done_before < COUNT, "killed too late to prove anything"

    async with EmbeddedHost(app_path("durable_work"), state_path=str(state), max_concurrent_activities=8) as host:
        await host.wait_idle(timeout=30)
        status = await host.client.get_status("job")
        assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed, status.output
        assert status.output == sum(n * n for n in range(COUNT))
        entity = await host.client.read_entity_state(df.EntityId("tally", "main"))
        assert entity.entity_state == status.output  # the entity call ran exactly once
    ran = _lines(log)
    assert set(map(int, ran)) == set(range(COUNT))  # every activity ran; some possibly twice (at-least-once)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    async with aiohttp.ClientSession() as session:
        while True:
            assert process.poll() is None, process.stdout.read().decode() if process.stdout else "aos host exited"
            try:
                async with session.get(url + "/runtime/webhooks/durabletask/instances/") as response:
                    if response.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            assert time.monotonic() < deadline, "aos host did not come up"
            await asyncio.sleep(0.1)


async def test_aos_host_serves_http_starter_and_status_links(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen([AOS, "host", app_path("chaining"), "--port", str(port), "--state", str(tmp_path / "s.db")],
                               cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await _wait_until_up(base, process)
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{base}/api/orchestrators/hello_cities") as response:
                assert response.status == 202
                links = await response.json()
            status_url = links["statusQueryGetUri"]
            for _ in range(100):
                async with session.get(status_url) as response:
                    body = await response.json()
                if body["runtimeStatus"] == "Completed":
                    break
                await asyncio.sleep(0.05)
            assert body["output"] == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)


async def test_aos_send_reaches_a_running_host(tmp_path: Path) -> None:
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    (tmp_path / "local.settings.json").write_text(json.dumps({"Values": {
        "EVENTS_TOPIC": "events", "TICK_SCHEDULE": "0 0 0 * * *", "AOS_MASTER_KEY": "secret"}}))
    process = subprocess.Popen([AOS, "host", app_path("messaging"), "--port", str(port), "--state", ""],
                               cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        await _wait_until_up(base, process)
        sent = subprocess.run([AOS, "send", "events", "--body", '{"kind": "cli"}', "--message-id", "cli-1",
                               "-p", "priority=low", "--url", base, "--key", "secret"],
                              capture_output=True, text=True, timeout=20)
        assert sent.returncode == 0, sent.stderr
        refused = subprocess.run([AOS, "send", "events", "--body", "{}", "--url", base, "--key", "wrong"],
                                 capture_output=True, text=True, timeout=20)
        assert refused.returncode != 0 and "401" in refused.stderr
        async with aiohttp.ClientSession() as session:
            for _ in range(100):
                async with session.get(f"{base}/runtime/webhooks/durabletask/instances/event-cli-1") as response:
                    body = await response.json() if response.status != 404 else {}
                if body.get("runtimeStatus") == "Completed":
                    break
                await asyncio.sleep(0.05)
        assert body["output"] == "handled cli"
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(10)
