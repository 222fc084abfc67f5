"""Faults through the real function_app.py on the embedded engine.

Malformed and misaddressed messages end in the dead-letter store with the reason and never block
the messages around them; a failing or slow model fails the turn, not the agent; a platform
killed with SIGKILL in the middle of a turn finishes it exactly once after a restart without
repeating a tool call that had completed; a burst of a thousand events to one agent is worked off
in order, exactly once, and redelivering some of them changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp

from kernel.messages import Envelope
from platform_support import (
    EVENTS_REALM,
    OUTPUTS_KERNEL,
    REPO,
    agent,
    archived_turn,
    deadletters,
    finished_turn,
    ok,
    recent_turns,
    requires_mcp_servers,
    result_text,
    running,
    send_event,
    settle,
    tool_steps,
    wait_until,
)
from realm_of_agents.services import services
from tests.inference.fake_openai import FakeOpenAI

CONFIGS = Path(__file__).resolve().parent / "configs"
CLERK = str(CONFIGS / "clerk.yaml")
ALIGNED = '{"aligned": true, "reason": "a batch job for this agent"}'


def _no_broker_dead_letters(platform: Any) -> None:
    bus = platform.host.bus
    for path in (EVENTS_REALM, OUTPUTS_KERNEL):
        assert bus.active_count(path) == 0, path
        assert bus.dead_letter_count(path) == 0, path


# -- a stop while turns run ---------------------------------------------------------------------

async def test_turns_running_at_shutdown_finish_after_the_restart_instead_of_failing_on_closed_services(
        tmp_path: Path, monkeypatch: Any) -> None:
    """The apps' services (tables, blobs, the sender) close at shutdown, and closing real ones takes
    a while. The engine stops first: a step that ran on after the close would fail on a closed
    service (recorded as the turn's failure) or quietly open a new one that nothing closes (the
    platform's files stay open). Stopped first, the steps wait and run at the next start."""
    import realm_of_agents.services as realm_services

    close = realm_services.close_services

    async def slow_close() -> None:  # closed at once, then slow to return, as a network client can be
        await close()
        await asyncio.sleep(1.0)

    monkeypatch.setattr(realm_services, "close_services", slow_close)
    state = tmp_path / "state"
    async with running(state, config_paths=CLERK) as platform:
        sent = [await send_event(platform, "clerk", "ledger.entry", {"entry": n}) for n in range(3)]
        assert _open_files(state)  # the platform's own (this check can see them)
    # Nothing ran on after the close and reopened a service behind it (a table store, say).
    assert _open_files(state) == []
    monkeypatch.setattr(realm_services, "close_services", close)
    async with running(state, config_paths=CLERK) as platform:
        records = [await finished_turn(platform, "clerk", event["turn_id"]) for event in sent]
        await settle(platform)
        clerk = await agent(platform, "clerk")

    assert [record["outcome"] for record in records] == ["replied"] * 3, [r.get("error") for r in records]
    assert clerk["counters"]["turns"] == 3 and clerk["counters"].get("failed", 0) == 0
    assert clerk["status"] == "sleeping" and clerk["inbox"] == 0


def _open_files(folder: Path) -> list[str]:
    """The files under ``folder`` this process has open (Linux: ``/proc/self/fd``)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # closed since the listing
            continue
        if target.startswith(str(folder)):
            found.append(target)
    return found


# -- a, b: malformed and misaddressed messages ---------------------------------------------------

async def test_malformed_messages_are_dead_lettered_with_the_reason_and_the_burst_goes_on(tmp_path: Path) -> None:
    not_json = b'{"id": "m-1", "type": "invoice.received", "source": "erp", '
    no_type = json.dumps({"id": "m-2", "source": "erp", "to": "cfo", "data": {"amount": 5}}).encode()
    good = Envelope(type="invoice.received", source="erp", to="cfo", data={"vendor": "Contoso", "amount": 75})
    async with running(tmp_path / "state") as platform:
        # One burst: the engine delivers the three in one batch to the wake function.
        await platform.host.send("agent-events", not_json, message_id="m-1", to="cfo", subject="invoice.received")
        await platform.host.send("agent-events", no_type, message_id="m-2", to="cfo")
        await platform.host.send("agent-events", good.to_json(), message_id=good.id, to="cfo", subject=good.type)
        await settle(platform)

        [turn] = await recent_turns(platform, "cfo")
        assert turn["event_id"] == good.id and turn["outcome"] == "replied"

        records = {r["message_id"]: r for r in await deadletters(platform)}
        assert set(records) == {"m-1", "m-2"}
        assert records["m-1"]["kind"] == "malformed" and "not valid JSON" in records["m-1"]["reason"]
        assert records["m-2"]["kind"] == "malformed"
        assert "missing required field 'type'" in records["m-2"]["reason"]
        for message_id, body in (("m-1", not_json), ("m-2", no_type)):
            assert records[message_id]["source"] == "agent-events/realm"
            full = await ok(platform, "GET", f"deadletters/{records[message_id]['id']}")
            assert full["body"] == body.decode()  # kept whole
        _no_broker_dead_letters(platform)  # settled, not left to the broker's retries


async def test_an_event_for_an_unknown_agent_is_dead_lettered_naming_the_agent(tmp_path: Path) -> None:
    lost = Envelope(type="invoice.received", source="erp", to="treasurer", data={"amount": 10})
    async with running(tmp_path / "state") as platform:
        status, body = await platform.api("POST", "agents/treasurer/events", {"type": "invoice.received"})
        assert status == 404 and "treasurer" in body["error"]  # the API refuses it outright

        await platform.host.send("agent-events", lost.to_json(), message_id=lost.id, to="treasurer", subject=lost.type)
        await settle(platform)

        [record] = await deadletters(platform)
        assert record["kind"] == "unknown-agent" and record["message_id"] == lost.id
        assert "'treasurer'" in record["reason"] and "not declared" in record["reason"]
        full = await ok(platform, "GET", f"deadletters/{record['id']}")
        assert Envelope.from_json(full["body"]) == lost
        _no_broker_dead_letters(platform)

        # A redelivery of the same message keeps one record.
        await platform.host.send("agent-events", lost.to_json(), message_id=lost.id, to="treasurer", subject=lost.type)
        await settle(platform)
        assert len(await deadletters(platform)) == 1


# -- c: model errors and timeouts -----------------------------------------------------------------

async def test_a_failing_or_slow_model_fails_the_turn_and_the_agent_takes_its_next_event(tmp_path: Path) -> None:
    async with FakeOpenAI() as model:
        # The turns of one agent run one at a time, so the script is consumed in this order.
        model.reply(ALIGNED).fail(500, "the model is overloaded").fail(500, "the model is overloaded")
        model.reply(ALIGNED).delay(5).delay(5)  # two attempts, each abandoned after the 1 s timeout
        model.reply(ALIGNED).reply("Entry recorded.")
        async with running(tmp_path / "state", config_paths=CLERK, extra_settings={
                "AOS_INFERENCE_ENDPOINT": model.base_url, "AOS_INFERENCE_MODEL": "fake-model",
                "AOS_INFERENCE_TIMEOUT_SECONDS": "1"}) as platform:
            server_error = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
            timeout = await send_event(platform, "clerk", "ledger.entry", {"entry": 2})
            fine = await send_event(platform, "clerk", "ledger.entry", {"entry": 3})
            failed = await finished_turn(platform, "clerk", server_error["turn_id"])
            assert failed["outcome"] == "failed" and failed["reply"] is None
            assert failed["error"].startswith("model call failed:") and "overloaded" in failed["error"]
            assert "500" in failed["error"]
            assert failed["steps"][-1]["kind"] == "model" and "overloaded" in failed["steps"][-1]["error"]
            assert failed["outputs"] == []

            slow = await finished_turn(platform, "clerk", timeout["turn_id"])
            assert slow["outcome"] == "failed"
            assert slow["error"].startswith("model call failed:") and "did not answer within 1 s" in slow["error"]

            answered = await finished_turn(platform, "clerk", fine["turn_id"])
            await settle(platform)
            assert answered["outcome"] == "replied" and answered["reply"] == "Entry recorded."
            assert answered["provider"] == "openai-compatible" and answered["alignment"]["method"] == "model"

            clerk = await agent(platform, "clerk")
            assert clerk["status"] == "sleeping" and clerk["inbox"] == 0 and clerk["current_event"] is None
            assert clerk["counters"]["turns"] == 3 and clerk["counters"]["failed"] == 2
            assert [t["outcome"] for t in clerk["memory"]["window"]] == ["failed", "failed", "replied"]
        # alignment + two attempts, alignment + two attempts, alignment + answer
        assert len(model.requests) == 8


# -- d: SIGKILL mid-turn --------------------------------------------------------------------------

RUNNER = """
import asyncio, json, sys
from kernel.platform import Platform

async def main(state_dir, config_paths, endpoint):
    settings = {"AOS_INFERENCE_ENDPOINT": endpoint, "AOS_INFERENCE_MODEL": "fake-model"}
    async with Platform(state_dir=state_dir, port=0, config_paths=config_paths, extra_settings=settings) as platform:
        print(json.dumps({"url": platform.base_url, "key": platform.key}), flush=True)
        await asyncio.Event().wait()

asyncio.run(main(*sys.argv[1:4]))
"""


class _PlatformProcess:
    """The platform in a child process (``python -c RUNNER``), talked to over its HTTP API."""

    def __init__(self, tmp_path: Path, config_paths: str, endpoint: str) -> None:
        self.args = [str(tmp_path / "state"), config_paths, endpoint]
        self.log = tmp_path / "platform.log"
        self.process: asyncio.subprocess.Process | None = None
        self.url = self.key = ""
        self.spawned: set[int] = set()

    async def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable, "-c", RUNNER, *self.args, cwd=str(REPO), stdout=asyncio.subprocess.PIPE, stderr=log)
        assert self.process.stdout is not None
        line = await asyncio.wait_for(self.process.stdout.readline(), timeout=60)
        assert line, f"the platform process did not start: {self.log.read_text()[-3000:]}"
        started = json.loads(line)
        self.url, self.key = started["url"], started["key"]

    async def api(self, session: aiohttp.ClientSession, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        async with session.request(method, f"{self.url}/api/{path}", json=body,
                                   headers={"x-functions-key": self.key}) as response:
            return response.status, await response.json(content_type=None)

    async def history(self, session: aiohttp.ClientSession, instance_id: str) -> list[dict[str, Any]]:
        async with session.get(f"{self.url}/runtime/webhooks/durabletask/instances/{instance_id}",
                               params={"showHistory": "true"}) as response:
            if response.status not in (200, 202):  # 202 while it runs
                return []
            return (await response.json()).get("historyEvents") or []

    def kill(self) -> None:
        """SIGKILL the platform process (its MCP servers run in sessions of their own)."""
        assert self.process is not None
        self.spawned |= _children(self.process.pid)
        os.kill(self.process.pid, signal.SIGKILL)

    async def wait(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.process.wait()

    async def stop(self) -> None:
        """End the process and any MCP server it left behind (by pid)."""
        if self.process is not None and self.process.returncode is None:
            self.spawned |= _children(self.process.pid)
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), timeout=15)
            except asyncio.TimeoutError:
                self.process.kill()
                await self.process.wait()
        for pid in self.spawned:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _children(pid: int) -> set[int]:
    """The processes whose parent is ``pid`` (from /proc)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry.name))
    return found


def _scratch_server(config_dir: Path, scratch: Path) -> Path:
    """An MCP config for the filesystem reference server over the test's own scratch folder."""
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / "scratch.yaml"
    path.write_text(json.dumps({
        "kind": "mcp_server", "id": "scratch", "transport": "stdio", "command": "node",
        "args": ["node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", str(scratch)],
        "timeouts": {"startup_seconds": 20, "call_seconds": 60}}))
    return path


@requires_mcp_servers
async def test_a_turn_killed_mid_tool_call_completes_once_after_restart_without_repeating_tools(tmp_path: Path) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    ledger = scratch / "ledger.txt"
    ledger.write_text("END\n")
    config_paths = ",".join([str(CONFIGS / "worker.yaml"), str(REPO / "mcp_configs" / "everything.yaml"),
                             str(_scratch_server(tmp_path / "mcp", scratch))])
    slow_seconds = 4
    async with FakeOpenAI() as model, aiohttp.ClientSession() as session:
        # The model asks for two tools in one answer: an append (each run adds a line) and a slow
        # operation during which the platform is killed; then it answers.
        model.reply(ALIGNED)
        model.reply("", tool_calls=[
            {"name": "scratch__edit_file", "arguments": {
                "path": str(ledger), "edits": [{"oldText": "END", "newText": "ran batch 7\nEND"}]}},
            {"name": "everything__trigger-long-running-operation", "arguments": {
                "duration": slow_seconds, "steps": 2}}])
        model.reply("Batch 7 is done.")

        first = _PlatformProcess(tmp_path, config_paths, model.base_url)
        second = _PlatformProcess(tmp_path, config_paths, model.base_url)
        try:
            await first.start()
            status, sent = await first.api(session, "POST", "agents/worker/events",
                                           {"type": "batch.run", "data": {"batch": 7, "job": "nightly batch job"}})
            assert status == 202, sent
            turn_id = sent["turn_id"]

            async def in_second_tool_call() -> bool:
                # Requests go to the MCP gateway over the bus; answers come back as raised events.
                history = await first.history(session, turn_id)
                sent = [e for e in history if e.get("Name") == "agent_tool_request" and e.get("EventType") == "TaskScheduled"]
                answers = [e for e in history if e.get("EventType") == "EventRaised"
                           and str(e.get("Name", "")).startswith(f"{turn_id}:")]
                # the tool list and the first call answered, the second (slow) call sent (the tool
                # list's request went out inside the policy activity, AOS_TURN_INLINE_STEPS)
                return len(sent) == 2 and len(answers) == 2

            await wait_until(in_second_tool_call, timeout=60, interval=0.05,
                             what="the turn to be in its second (slow) tool call")
            assert ledger.read_text() == "ran batch 7\nEND\n"
            await asyncio.sleep(0.5)  # well inside the slow operation
            first.kill()
            await first.wait()
            assert first.process is not None and first.process.returncode == -signal.SIGKILL

            await second.start()

            async def archived() -> dict[str, Any] | None:
                code, record = await second.api(session, "GET", f"agents/worker/turns/{turn_id}")
                return record if code == 200 and "outcome" in record else None

            record = await wait_until(archived, timeout=60, interval=0.1, what="the turn to finish after the restart")
            await asyncio.sleep(0.5)
            _, worker = await second.api(session, "GET", "agents/worker")
            _, turns = await second.api(session, "GET", "agents/worker/turns")
        finally:
            await first.stop()
            await second.stop()

    assert record["outcome"] == "replied" and record["reply"] == "Batch 7 is done."
    edit, slow = tool_steps(record)
    assert (edit["tool"], slow["tool"]) == ("edit_file", "trigger-long-running-operation")
    assert edit["result"]["is_error"] is False
    assert slow["result"]["is_error"] is False and "Long running operation completed" in result_text(slow)
    # Exactly once: one archived turn, counted once, and the completed append was not run again.
    assert [t["turn_id"] for t in turns["turns"]] == [turn_id]
    assert worker["counters"]["turns"] == 1 and worker["counters"]["tool_calls"] == 2
    assert worker["status"] == "sleeping" and worker["current_event"] is None
    assert ledger.read_text() == "ran batch 7\nEND\n"
    # Nor were the completed model calls: alignment, the tool-call answer, the final answer.
    assert len(model.requests) == 3


# -- e: a burst of a thousand events --------------------------------------------------------------

async def test_a_burst_of_a_thousand_events_is_processed_in_order_exactly_once(tmp_path: Path) -> None:
    count = 1000
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        envelopes = [Envelope(id=f"burst-{n:04d}", type="ledger.entry", source="ledger-feed", to="clerk",
                              data={"entry": n, "note": "ledger entry"}) for n in range(count)]
        started = time.perf_counter()
        for envelope in envelopes:
            await platform.host.send("agent-events", envelope.to_json(), message_id=envelope.id, to="clerk",
                                     subject=envelope.type)
        await settle(platform, 600)
        elapsed = time.perf_counter() - started
        print(f"\n{count} events to one agent: {elapsed:.1f} s wall time ({count / elapsed:.0f} turns/s)")

        clerk = await agent(platform, "clerk")
        assert clerk["counters"]["turns"] == count
        assert clerk["counters"]["failed"] == 0 and clerk["counters"]["declined"] == 0
        assert clerk["status"] == "sleeping" and clerk["inbox"] == 0

        rows = await services().archive.recent("clerk", count + 100)
        assert len(rows) == count
        assert len({row["turn_id"] for row in rows}) == count
        assert [row["event_id"] for row in reversed(rows)] == [e.id for e in envelopes]  # in send order
        _no_broker_dead_letters(platform)
        assert await deadletters(platform) == []

        # Redelivery of ten of them (old and recent ones): no new turns, and the agent is not wedged.
        for envelope in envelopes[:5] + envelopes[-5:]:
            await platform.host.send("agent-events", envelope.to_json(), message_id=envelope.id, to="clerk",
                                     subject=envelope.type)
        await settle(platform)
        clerk = await agent(platform, "clerk")
        assert clerk["counters"]["turns"] == count and clerk["inbox"] == 0 and clerk["current_event"] is None
        assert len(await services().archive.recent("clerk", count + 100)) == count

        after = await send_event(platform, "clerk", "ledger.entry", {"entry": count})
        await settle(platform)
        assert (await archived_turn(platform, "clerk", after["turn_id"]))["outcome"] == "replied"
        assert (await agent(platform, "clerk"))["counters"]["turns"] == count + 1
