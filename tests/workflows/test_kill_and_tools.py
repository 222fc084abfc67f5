"""A run survives SIGKILL of the whole platform; tool steps go through the MCP gateway as the workflow."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import aiohttp

from kernel.config import load_configs
from tests.realm.platform_support import REPO, requires_mcp_servers, running, wait_until
from tests.workflows.support import (
    config_paths,
    finished,
    start,
    steps,
    write_workflow,
)

RUNNER = """
import asyncio, json, sys
from kernel.platform import Platform

async def main(state_dir, config_paths):
    async with Platform(state_dir=state_dir, port=0, config_paths=config_paths) as platform:
        print(json.dumps({"url": platform.base_url, "key": platform.key}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:3]))
"""


class _Process:
    def __init__(self, tmp_path: Path, paths: str) -> None:
        self.args = [str(tmp_path / "state"), paths]
        self.log = tmp_path / "platform.log"
        self.process: asyncio.subprocess.Process | None = None
        self.url = self.key = ""

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(sys.executable, "-c", RUNNER, *self.args, cwd=str(REPO),
                                                                stdout=asyncio.subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=60)
        assert line, self.log.read_text()[-3000:]
        started = json.loads(line)
        self.url, self.key = started["url"], started["key"]

    async def api(self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with session.request(method, f"{self.url}/api/{path}", json=body,
                                   headers={"x-functions-key": self.key}) as response:
            return response.status, await response.json(content_type=None)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=15)
            except TimeoutError:
                self.process.kill()
                await self.process.wait()


async def test_a_run_killed_with_sigkill_resumes_where_it_was_after_a_restart(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "durable", "steps": [
        {"id": "before", "agent": "analyst", "event": "analysis.before", "data": {"n": "{{ input.n }}"}},
        {"id": "gate", "needs": ["before"], "approval": {"prompt": "go on with {{ input.n }}?"}, "timeout_seconds": 600},
        {"id": "left", "needs": ["gate"], "agent": "reviewer", "event": "review.left", "data": {}},
        {"id": "right", "needs": ["gate"], "agent": "analyst", "event": "analysis.right", "data": {}}],
        "output": {"before": "{{ steps.before.output.turn_id }}", "right": "{{ steps.right.status }}"}})
    paths = config_paths(wf)
    first, second = _Process(tmp_path, paths), _Process(tmp_path, paths)
    async with aiohttp.ClientSession() as session:
        try:
            await first.start()
            status, started = await first.api(session, "POST", "workflows/durable/start", {"input": {"n": 5}})
            assert status == 202, started
            run_id = started["run_id"]

            async def gate_open(process: _Process) -> Any:
                code, view = await process.api(session, "GET", f"workflows/runs/{run_id}")
                return code == 200 and steps(view).get("gate", {}).get("status") == "running" and view

            before = await wait_until(lambda: gate_open(first), timeout=60, what="the run to wait at its gate")
            assert first.process is not None
            os.kill(first.process.pid, signal.SIGKILL)
            await first.process.wait()
            assert first.process.returncode == -signal.SIGKILL

            await second.start()
            resumed = await wait_until(lambda: gate_open(second), timeout=60, what="the run after the restart")
            status, _ = await second.api(session, "POST", f"workflows/runs/{run_id}/steps/gate/approval",
                                         {"approve": True, "by": "ops"})
            assert status == 200

            async def done() -> Any:
                code, view = await second.api(session, "GET", f"workflows/runs/{run_id}")
                return code == 200 and view["status"] == "completed" and view

            view = await wait_until(done, timeout=60, what="the run to complete after the restart")
            _, analyst = await second.api(session, "GET", "agents/analyst")
        finally:
            await first.stop()
            await second.stop()
    by_id = steps(view)
    # the step done before the kill was not repeated: same turn, one attempt, and the analyst took
    # exactly two turns (before, right)
    assert steps(before)["before"]["output"] == steps(resumed)["before"]["output"] == by_id["before"]["output"]
    assert by_id["before"]["attempts"] == 1 and analyst["counters"]["turns"] == 2
    assert by_id["gate"]["output"]["approved"] is True and by_id["gate"]["output"]["by"] == "ops"
    assert view["output"] == {"before": by_id["before"]["output"]["turn_id"], "right": "completed"}


@requires_mcp_servers
async def test_tool_steps_call_granted_tools_as_the_workflow_and_a_failing_one_compensates(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "tools", "tools": [{"server": "everything", "tools": ["echo", "get-sum"]}],
                                          "steps": [
        {"id": "say", "tool": "everything.echo", "arguments": {"message": "hello {{ input.who }}"},
         "outputs": {"said": "{{ result.text }}"},
         "compensate": {"tool": "everything.echo", "arguments": {"message": "undo {{ steps.say.output.said }}"}}},
        {"id": "add", "needs": ["say"], "tool": "everything.get-sum", "arguments": {"a": "{{ input.a }}", "b": 2}}]})
    paths = config_paths(wf, REPO / "mcp_configs" / "everything.yaml")
    assert load_configs(paths.split(",")).ok
    async with running(tmp_path / "state", config_paths=paths) as platform:
        good = await start(platform, "tools", {"who": "world", "a": 40})
        ok_view = await finished(platform, good, timeout=90)
        bad = await start(platform, "tools", {"who": "again", "a": "forty"})
        bad_view = await finished(platform, bad, timeout=90)
    assert ok_view["status"] == "completed", ok_view
    said = steps(ok_view)["say"]["output"]["said"]
    assert "hello world" in said
    assert "42" in steps(ok_view)["add"]["output"]["text"]
    assert bad_view["status"] == "failed" and bad_view["failed_step"] == "add"
    assert bad_view["compensated"] == ["say"]
    undo = steps(bad_view)["say"]["compensation"]
    assert undo["status"] == "completed" and "undo" in undo["output"]["text"] and "hello again" in undo["output"]["text"]
