"""The steps a turn takes on the real function_app.py: policy, purpose check and (for an agent
without MCP tools) the first model call in one activity, archive and publish in one
(``agent_conclude``), begin and the state read in one entity batch; the steps after the policy
read that need no durable wait run inside the policy activity (``realm_of_agents.inline_steps``),
unless AOS_TURN_INLINE_STEPS=off; and when archive or publish fails inside ``agent_conclude``,
that step is retried on its own, in the same order as before, and the output still goes out
exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernel.topology import AGENT_OUTPUTS
from platform_support import (agent, drain, entity_operations, finished_turn, observe, recent_turns, running,
                              send_event, settle, turn_history)
from realm_of_agents.services import services

CLERK = str(Path(__file__).resolve().parent / "configs" / "clerk.yaml")


def _scheduled(platform: Any, turn_id: str) -> list[str]:
    """The activities the turn scheduled, in order (from its history)."""
    return [e["Name"] for e in turn_history(platform, turn_id) if e["EventType"] == "TaskScheduled"]


def _policy_result(platform: Any, turn_id: str) -> dict[str, Any]:
    """What the turn's policy activity returned, from the turn's history."""
    history = turn_history(platform, turn_id)
    policy_ids = {e["EventId"] for e in history if e["EventType"] == "TaskScheduled" and e["Name"] == "agent_policy"}
    result = next(e["Result"] for e in history if e["EventType"] == "TaskCompleted" and e["TaskScheduledId"] in policy_ids)
    return json.loads(result) if isinstance(result, str) else result


def _ran_inline(platform: Any, turn_id: str) -> list[str]:
    """The steps the policy activity ran inline, in order."""
    return [name for name, _ in (_policy_result(platform, turn_id).get("inline") or {}).get("steps", [])]


def _replies(platform: Any, path: str, turn_id: str) -> list[Any]:
    return [m for m in drain(platform, path) if turn_id in (m.body.decode() if isinstance(m.body, bytes) else str(m.body))]


OFF = {"AOS_TURN_INLINE_STEPS": "off"}


async def test_a_turn_is_one_activity_and_two_entity_batches(tmp_path: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        outputs = observe(platform, AGENT_OUTPUTS)
        sent = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
        record = await finished_turn(platform, "clerk", sent["turn_id"])
        await settle(platform)
        assert record["outcome"] == "replied" and record["alignment"]["aligned"] is True
        # the conclusion (archive, publish) ran inside the policy activity
        assert _scheduled(platform, sent["turn_id"]) == ["agent_policy"]
        assert _ran_inline(platform, sent["turn_id"]) == ["agent_conclude"]
        assert [s["kind"] for s in record["steps"]] == ["model"] and record["steps"][0]["provider"] == "offline"
        # begin and context go to the entity from the first episode, together (one batch); then finish
        assert entity_operations(platform, sent["turn_id"]) == [["begin", "context"], ["finish"]]
        assert len(_replies(platform, outputs, sent["turn_id"])) == 1
        # the orchestration read the clock the inline steps ran at: the record archived there and the
        # turn the entity remembers carry the same time
        ran_at = _policy_result(platform, sent["turn_id"])["inline"]["at"]
        assert record["finished"] == ran_at and record["started"] < ran_at
        window = (await agent(platform, "clerk"))["memory"]["window"]
        assert [(t["turn_id"], t["time"]) for t in window] == [(sent["turn_id"], ran_at)]


async def test_with_inline_steps_off_the_conclusion_is_its_own_activity(tmp_path: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK, extra_settings=OFF) as platform:
        outputs = observe(platform, AGENT_OUTPUTS)
        sent = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
        record = await finished_turn(platform, "clerk", sent["turn_id"])
        await settle(platform)
        assert record["outcome"] == "replied"
        assert _scheduled(platform, sent["turn_id"]) == ["agent_policy", "agent_conclude"]
        assert "inline" not in _policy_result(platform, sent["turn_id"])
        assert entity_operations(platform, sent["turn_id"]) == [["begin", "context"], ["finish"]]
        assert len(_replies(platform, outputs, sent["turn_id"])) == 1


@pytest.mark.parametrize("replay_cache", ["256", "0"])
async def test_a_context_tool_call_runs_inline_and_the_next_model_call_is_an_activity(
        tmp_path: Path, replay_cache: str) -> None:
    """With replay_cache 0 every episode replays the turn from its start, taking the inline results
    again: the engine's determinism check fails the turn if that run schedules anything else."""
    async with running(tmp_path / "state", config_paths=CLERK,
                       extra_settings={"AOS_ENGINE_REPLAY_CACHE": replay_cache}) as platform:
        fact = "the ledger closes on Fridays"
        sent = await send_event(platform, "clerk", "ledger.entry", {
            "tool_call": {"server": "context", "tool": "remember_fact", "arguments": {"fact": fact}}})
        record = await finished_turn(platform, "clerk", sent["turn_id"])
        await settle(platform)
        assert record["outcome"] == "replied" and not record["error"]
        assert [s["kind"] for s in record["steps"]] == ["model", "tool", "model"]
        assert record["steps"][1]["tool"] == "remember_fact" and not record["steps"][1]["result"].get("is_error")
        # the tool ran with the policy read; the model's second call is checkpointed on its own, and
        # the conclusion after it is an activity again
        assert _ran_inline(platform, sent["turn_id"]) == ["agent_tool"]
        assert _scheduled(platform, sent["turn_id"]) == ["agent_policy", "agent_model", "agent_conclude"]
        assert fact in json.dumps((await agent(platform, "clerk"))["memory"]["facts"])  # applied by finish


@pytest.mark.parametrize(("settings", "failures", "scheduled", "inline", "order"), [
    # inside the policy activity: conclude's archive fails, the archive on its own succeeds there
    ({}, 1, ["agent_policy"], ["agent_conclude", "agent_archive", "agent_publish"], ["archive", "archive", "publish"]),
    # the archive on its own fails there too: the orchestration schedules it (with its retries), then the publish
    ({}, 2, ["agent_policy", "agent_archive", "agent_publish"], ["agent_conclude"],
     ["archive", "archive", "archive", "publish"]),
    (OFF, 1, ["agent_policy", "agent_conclude", "agent_archive", "agent_publish"], [], ["archive", "archive", "publish"]),
], ids=["inline", "inline-then-scheduled", "off"])
async def test_an_archive_failing_in_conclude_is_retried_on_its_own_before_the_publish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], failures: int,
        scheduled: list[str], inline: list[str], order: list[str]) -> None:
    async with running(tmp_path / "state", config_paths=CLERK, extra_settings=settings) as platform:
        outputs = observe(platform, AGENT_OUTPUTS)
        archive = services().archive
        save, seen, left = archive.save, [], [failures]

        async def flaky_save(record: dict[str, Any]) -> bool:
            seen.append("archive")
            if left[0]:
                left[0] -= 1
                raise ConnectionError("table storage is unreachable")
            return await save(record)

        sender = services().adapters.sender
        send = sender.send

        async def noting_send(topic: str, messages: Any) -> Any:
            if topic == AGENT_OUTPUTS:
                seen.append("publish")
            return await send(topic, messages)

        monkeypatch.setattr(archive, "save", flaky_save)
        monkeypatch.setattr(sender, "send", noting_send)
        sent = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
        record = await finished_turn(platform, "clerk", sent["turn_id"])
        await settle(platform)
        assert record["outcome"] == "replied" and not record["error"]
        assert _scheduled(platform, sent["turn_id"]) == scheduled
        assert _ran_inline(platform, sent["turn_id"]) == inline
        assert seen == order  # nothing went out before the archive held
        assert len(_replies(platform, outputs, sent["turn_id"])) == 1
        assert [t["turn_id"] for t in await recent_turns(platform, "clerk")] == [sent["turn_id"]]


@pytest.mark.parametrize(("settings", "failures", "scheduled", "inline"), [
    ({}, 1, ["agent_policy"], ["agent_conclude", "agent_publish"]),
    ({}, 2, ["agent_policy", "agent_publish"], ["agent_conclude"]),
    (OFF, 1, ["agent_policy", "agent_conclude", "agent_publish"], []),
], ids=["inline", "inline-then-scheduled", "off"])
async def test_a_publish_failing_in_conclude_is_retried_on_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, settings: dict[str, str], failures: int,
        scheduled: list[str], inline: list[str]) -> None:
    async with running(tmp_path / "state", config_paths=CLERK, extra_settings=settings) as platform:
        outputs = observe(platform, AGENT_OUTPUTS)
        sender = services().adapters.sender
        send, left = sender.send, [failures]

        async def flaky_send(topic: str, messages: Any) -> Any:
            if topic == AGENT_OUTPUTS and left[0]:
                left[0] -= 1
                raise ConnectionError("the outputs topic is unreachable")
            return await send(topic, messages)

        monkeypatch.setattr(sender, "send", flaky_send)
        sent = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
        record = await finished_turn(platform, "clerk", sent["turn_id"])
        await settle(platform)
        assert record["outcome"] == "replied"
        assert _scheduled(platform, sent["turn_id"]) == scheduled
        assert _ran_inline(platform, sent["turn_id"]) == inline
        assert len(_replies(platform, outputs, sent["turn_id"])) == 1
        assert [t["turn_id"] for t in await recent_turns(platform, "clerk")] == [sent["turn_id"]]


async def test_a_bad_inline_steps_setting_fails_the_turn_naming_the_setting(tmp_path: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK,
                       extra_settings={"AOS_TURN_INLINE_STEPS": "sometimes"}) as platform:
        sent = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
        record = await finished_turn(platform, "clerk", sent["turn_id"], timeout=60)
        assert record["outcome"] == "failed"
        assert "AOS_TURN_INLINE_STEPS must be on or off, got 'sometimes'" in record["error"]
