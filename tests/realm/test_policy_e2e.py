"""Policies enforced at the point of use, on the embedded engine running function_app.py.

Token budgets and model allow-lists refuse model calls before they are made, tool-call rate limits
refuse calls at the MCP gateway and at the context-tool activity while the turn goes on, per-turn
limits cap the turn, and quiet hours defer a turn on a durable timer (virtual clock) or refuse it.
Every refusal is on the turn record and on the agent's audit chain."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from platform_support import (
    archived_turn,
    finished_turn,
    ok,
    requires_mcp_servers,
    result_text,
    running,
    send_event,
    settle,
    tool_steps,
    wait_until,
)

from kernel.engine.clock import VirtualClock
from kernel.platform import Platform
from tests.inference.fake_openai import FakeOpenAI

ALIGNED = '{"aligned": true, "reason": "ledger work is this agent\'s job"}'


def _write(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document))


def _agent(configs: Path, agent_id: str, **fields: Any) -> None:
    _write(configs, f"{agent_id}.json", {
        "kind": "agent", "id": agent_id, "display_name": agent_id.title(),
        "purpose": "Keep the ledger current and explain changes.",
        "subscriptions": [{"event_types": ["ledger.*"]}], **fields})


def _policy(configs: Path, policy_id: str, applies_to: list[str], **limits: Any) -> None:
    _write(configs / "policies", f"{policy_id}.json", {"kind": "policy", "id": policy_id, "applies_to": applies_to,
                                                        **limits})


async def _audit(platform: Platform, chain: str) -> list[dict[str, Any]]:
    return (await ok(platform, "GET", f"audit?chain={chain}"))["records"]


async def _turn(platform: Platform, agent_id: str, data: Any, event_type: str = "ledger.entry") -> dict[str, Any]:
    sent = await send_event(platform, agent_id, event_type, data)
    await settle(platform)
    return await archived_turn(platform, agent_id, sent["turn_id"])


def _refused(audit: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for record in audit if record["kind"] == "policy.refused"]


async def test_a_spent_token_budget_refuses_the_next_model_call_on_the_turn_and_in_the_audit(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    _agent(configs, "thrifty")
    _policy(configs, "budget", ["thr*"], tokens_per_day=5)
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        first = await _turn(platform, "thrifty", {"entry": "rent paid for the month of March"})
        second = await _turn(platform, "thrifty", {"entry": "office supplies bought"})
        audit = await _audit(platform, "thrifty")
        usage = await ok(platform, "GET", "usage?agent=thrifty&days=1")
        state = await ok(platform, "GET", "agents/thrifty")

    # the first call was within the budget (and spent it: the offline provider counts words)
    assert first["outcome"] == "replied" and first["refusals"] == [] and first["policies"] == ["budget"]
    spent = first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    assert spent >= 5
    # the second turn's model call was refused before it was made
    assert second["outcome"] == "refused" and second["reply"] is None
    step = second["steps"][-1]
    assert step["kind"] == "policy" and step["rule"] == "tokens_per_day" and step["policies"] == ["budget"]
    assert (step["limit"], step["observed"], step["call"]) == (5, spent, "turn")
    assert second["error"].startswith("refused by policy: policy 'budget': agent 'thrifty' has used")
    assert second["refusals"] == [{k: v for k, v in step.items() if k != "kind"}]
    assert not [s for s in second["steps"] if s["kind"] == "model"]
    assert usage["agents"]["thrifty"]["total"]["calls"] == 1  # the refused call cost nothing
    # audited on the agent's chain, naming the policy
    [record] = _refused(audit)
    assert record["actor"] == "policy:budget" and record["subject"] == "tokens_per_day"
    assert record["data"]["turn_id"] == second["turn_id"] and record["data"]["limit"] == 5
    assert state["counters"]["turns"] == 2


@requires_mcp_servers
async def test_a_tool_rate_limit_refuses_the_call_over_the_limit_and_the_turn_goes_on(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    async with FakeOpenAI(models=("tiny-base",)) as model:
        _write(configs / "endpoints", "lab.json", {
            "kind": "inference_endpoint", "id": "lab", "type": "vllm", "url": model.base_url,
            "base_model": "tiny-base", "timeout_seconds": 10, "retries": {"max_attempts": 1}})
        _write(configs, "everything.json", {
            "kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node",
            "args": ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]})
        _agent(configs, "clerk", model={"endpoint": "lab"}, tools=[{"server": "everything", "tools": ["echo"]}])
        _policy(configs, "paced", ["clerk"], tool_calls={"per_hour": 1})
        model.reply(ALIGNED)
        model.reply(None, tool_calls=[
            {"id": "call_1", "name": "everything__echo", "arguments": {"message": "one"}},
            {"id": "call_2", "name": "everything__echo", "arguments": {"message": "two"}},
            {"id": "call_3", "name": "context__remember_fact", "arguments": {"fact": "echo was called twice"}}])
        model.reply("Echoed once; the rest was refused.")
        await _clear_of_the_hour_boundary()
        async with running(tmp_path / "state", config_paths=str(configs)) as platform:
            record = await _turn(platform, "clerk", {"entry": "echo the ledger"})
            audit = await _audit(platform, "clerk")
        answered = model.requests[-1]

    assert record["outcome"] == "replied" and record["reply"] == "Echoed once; the rest was refused."
    first, second, third = tool_steps(record)
    assert first["result"]["is_error"] is False and result_text(first) == "Echo: one"
    # over the limit at the MCP gateway: not run, and the model was told why
    assert second["result"]["error"] == "PolicyRefused" and second["result"]["policy"]["rule"] == "tool_calls.per_hour"
    assert "refused by policy: policy 'paced': agent 'clerk' has made 1 tool call this hour" in result_text(second)
    # ... and at the context-tool activity: the fact was not remembered
    assert third["server"] == "context" and third["result"]["error"] == "PolicyRefused"
    assert record["facts"] == []
    assert [r["rule"] for r in record["refusals"]] == ["tool_calls.per_hour"] * 2
    assert [r["tool_index"] for r in record["refusals"]] == [1, 2]
    tool_messages = [m for m in answered["messages"] if m["role"] == "tool"]
    assert ["refused by policy" in m["content"] for m in tool_messages] == [False, True, True]
    # one tool.call (the echo that ran), two refusals naming the policy and the tool, no arguments
    assert [r["kind"] for r in audit if r["kind"].startswith("tool.")] == ["tool.call"]
    refused = _refused(audit)
    assert [(r["actor"], r["subject"]) for r in refused] == [("policy:paced", "everything.echo"),
                                                             ("policy:paced", "context.remember_fact")]
    assert all(r["data"]["turn_id"] == record["turn_id"] and r["data"]["observed"] == 1 for r in refused)
    assert "two" not in json.dumps(refused) and "arguments" not in json.dumps(refused)


async def _clear_of_the_hour_boundary() -> None:
    """Fixed windows start again on the hour: keep the test's calls inside one hour."""
    seconds = time.time() % 3600
    if seconds > 3600 - 20:
        await asyncio.sleep(3600 - seconds + 0.5)


async def test_forbidden_adapters_and_endpoints_are_refused_before_any_model_call(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    async with FakeOpenAI(models=("tiny-base", "ledger-lora")) as model:
        _write(configs / "endpoints", "lab.json", {
            "kind": "inference_endpoint", "id": "lab", "type": "vllm", "url": model.base_url,
            "base_model": "tiny-base", "adapters": {"served": ["ledger-lora"]}, "structured_output": True,
            "timeout_seconds": 10})
        for name in ("ledger-lora", "audit-lora"):
            _write(configs, f"{name}.json", {"kind": "adapter", "name": name, "version": "1",
                                              "base_model": "tiny-base", "training_data": {"uri": "data/x.jsonl"}})
        _agent(configs, "voice", model={"endpoint": "lab", "adapter": {"name": "ledger-lora"}})
        _agent(configs, "local")  # no endpoint: the offline provider answers
        _policy(configs, "auditors-voice", ["voice"], models={"adapters": ["audit-lora"]})
        _policy(configs, "lab-only", ["local"], models={"endpoints": ["lab"]})
        async with running(tmp_path / "state", config_paths=str(configs)) as platform:
            voice = await _turn(platform, "voice", {"entry": "summarise the ledger"})
            local = await _turn(platform, "local", {"entry": "summarise the ledger"})
            voice_audit, local_audit = await _audit(platform, "voice"), await _audit(platform, "local")
        assert model.requests == []  # nothing reached the model

    assert voice["outcome"] == "refused" and voice["alignment"]["method"] == "policy"
    [step] = voice["steps"]
    assert (step["rule"], step["policies"], step["observed"], step["call"]) == (
        "models.adapters", ["auditors-voice"], "ledger-lora@latest", "purpose")
    assert "does not allow adapter 'ledger-lora'" in voice["error"]
    assert local["outcome"] == "refused"
    assert (local["steps"][-1]["rule"], local["steps"][-1]["observed"]) == ("models.endpoints", "offline")
    assert "does not allow model calls to the offline provider (allowed: lab)" in local["error"]
    assert [(r["actor"], r["data"]["rule"]) for r in _refused(voice_audit)] == [
        ("policy:auditors-voice", "models.adapters")]
    assert [(r["actor"], r["data"]["rule"]) for r in _refused(local_audit)] == [("policy:lab-only", "models.endpoints")]


async def test_per_turn_limits_of_a_policy_cap_the_agents_own(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    _agent(configs, "brief", model={"max_steps": 6})
    _agent(configs, "frugal")
    _policy(configs, "short-turns", ["brief"], max_steps_per_turn=1)
    _policy(configs, "no-tools", ["frugal"], max_tool_calls_per_turn=0)
    ask = {"entry": "note the rent", "tool_call": {"server": "context", "tool": "remember_fact",
                                                   "arguments": {"fact": "rent is due on the first"}}}
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        brief = await _turn(platform, "brief", ask)
        frugal = await _turn(platform, "frugal", ask)
        brief_audit, frugal_audit = await _audit(platform, "brief"), await _audit(platform, "frugal")

    # one model call (which asked for a tool), then the policy's step limit ended the turn
    assert [s["kind"] for s in brief["steps"]] == ["model", "tool", "policy"]
    assert brief["outcome"] == "refused" and brief["steps"][-1]["rule"] == "max_steps_per_turn"
    assert "policy 'short-turns' allows 1 model call per turn" in brief["error"]
    assert [r["actor"] for r in _refused(brief_audit)] == ["policy:short-turns"]
    # the tool call over the policy's limit is refused, and the model answers without it
    assert frugal["outcome"] == "replied" and frugal["tool_calls"] == 0 and frugal["facts"] == []
    [step] = tool_steps(frugal)
    assert step["result"]["error"] == "PolicyRefused"
    assert "policy 'no-tools' allows 0 tool calls per turn" in result_text(step)
    assert [r["rule"] for r in frugal["refusals"]] == ["max_tool_calls_per_turn"]
    [record] = _refused(frugal_audit)
    assert record["subject"] == "max_tool_calls_per_turn" and record["data"]["turn_id"] == frugal["turn_id"]


async def test_quiet_hours_with_refuse_end_the_turn_and_keep_the_event(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    _agent(configs, "sleeper")
    _policy(configs, "closed", ["sleeper"], quiet_hours={"windows": [{"start": "00:00", "end": "24:00"}],
                                                         "action": "refuse"})
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        record = await _turn(platform, "sleeper", {"entry": "a late invoice"})
        audit = await _audit(platform, "sleeper")
        usage = await ok(platform, "GET", "usage?agent=sleeper&days=1")

    assert record["outcome"] == "refused" and record["alignment"] is None
    [step] = record["steps"]
    assert (step["kind"], step["rule"], step["action"], step["policies"]) == ("policy", "quiet_hours", "refuse",
                                                                              ["closed"])
    assert "quiet hours (00:00-24:00 UTC daily)" in record["error"]
    assert record["event"]["data"] == {"entry": "a late invoice"}  # nothing is lost
    assert usage["agents"] == {}  # no model call
    [refused] = _refused(audit)
    assert refused["actor"] == "policy:closed" and refused["data"]["action"] == "refuse"


async def test_quiet_hours_with_defer_wait_on_a_durable_timer_and_then_run(tmp_path: Path) -> None:
    clock = VirtualClock(datetime(2030, 1, 1, 4, 30, tzinfo=timezone.utc))  # 05:30 in Berlin, a Tuesday
    configs = tmp_path / "configs"
    _agent(configs, "night-owl")
    _policy(configs, "berlin-nights", ["night-*"], quiet_hours={
        "timezone": "Europe/Berlin", "windows": [{"start": "22:00", "end": "06:00"}]})
    async with Platform(state_dir=tmp_path / "state", port=0, clock=clock, config_paths=str(configs)) as platform:
        sent = await send_event(platform, "night-owl", "ledger.entry", {"entry": "an early invoice"})

        async def deferred() -> dict[str, Any] | None:
            status, progress = await platform.api("GET", f"agents/night-owl/turns/{sent['turn_id']}")
            return progress if status == 200 and progress.get("phase") == "quiet-hours" else None

        progress = await wait_until(deferred, what="the turn to wait for the end of the quiet hours")
        assert progress["until"] == "2030-01-01T05:00:00+00:00" and progress["policies"] == ["berlin-nights"]
        audit = await _audit(platform, "night-owl")
        assert [r["kind"] for r in audit] == ["policy.deferred"]
        assert audit[0]["actor"] == "policy:berlin-nights" and audit[0]["data"]["until"] == progress["until"]

        clock.set(datetime(2030, 1, 1, 5, 0, 1, tzinfo=timezone.utc))  # the window is over
        record = await finished_turn(platform, "night-owl", sent["turn_id"])

    assert record["outcome"] == "replied" and record["refusals"] == []
    step = record["steps"][0]
    assert (step["kind"], step["rule"], step["action"]) == ("policy", "quiet_hours", "defer")
    assert step["until"] == "2030-01-01T05:00:00+00:00"
    assert datetime.fromisoformat(step["resumed"]) >= datetime(2030, 1, 1, 5, tzinfo=timezone.utc)
    assert record["steps"][1]["kind"] == "model"
    assert datetime.fromisoformat(record["finished"]) - datetime.fromisoformat(record["started"]) >= timedelta(
        minutes=30)
