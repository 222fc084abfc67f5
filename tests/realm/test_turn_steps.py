"""The steps a turn takes on the real function_app.py: policy, purpose check and (for an agent
without MCP tools) the first model call in one activity, archive and publish in one
(``agent_conclude``), begin and the state read in one entity batch;
and when archive or publish fails inside ``agent_conclude``, that step is retried on its own, in
the same order as before, and the output still goes out exactly once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernel.topology import AGENT_OUTPUTS
from platform_support import drain, finished_turn, observe, recent_turns, running, send_event, settle
from realm_of_agents.services import services

CLERK = str(Path(__file__).resolve().parent / "configs" / "clerk.yaml")


def _scheduled(platform: Any, turn_id: str) -> list[str]:
    """The activities the turn scheduled, in order (from its history)."""
    status = platform.host.engine.status(turn_id, show_history=True)
    return [e["Name"] for e in status["historyEvents"] if e["EventType"] == "TaskScheduled"]


def _entity_operations(platform: Any, turn_id: str) -> list[list[str]]:
    """The entity operations the turn sent, grouped by the episode that sent them."""
    history = platform.host.engine.status(turn_id, show_history=True)["historyEvents"]
    episodes: list[list[str]] = []
    for event in history:
        if event["EventType"] == "OrchestratorStarted":
            episodes.append([])
        elif event["EventType"] == "EventSent":
            episodes[-1].append(json.loads(event["Input"])["op"])
    return [ops for ops in episodes if ops]


def _replies(platform: Any, path: str, turn_id: str) -> list[Any]:
    return [m for m in drain(platform, path) if turn_id in (m.body.decode() if isinstance(m.body, bytes) else str(m.body))]


async def test_a_turn_is_two_activities_and_two_entity_batches(tmp_path: Path) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        outputs = observe(platform, AGENT_OUTPUTS)
        sent = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
        record = await finished_turn(platform, "clerk", sent["turn_id"])
        await settle(platform)
        assert record["outcome"] == "replied" and record["alignment"]["aligned"] is True
        assert _scheduled(platform, sent["turn_id"]) == ["agent_policy", "agent_conclude"]
        assert [s["kind"] for s in record["steps"]] == ["model"] and record["steps"][0]["provider"] == "offline"
        # begin and context go to the entity from the first episode, together (one batch); then finish
        assert _entity_operations(platform, sent["turn_id"]) == [["begin", "context"], ["finish"]]
        assert len(_replies(platform, outputs, sent["turn_id"])) == 1


async def test_an_archive_failing_in_conclude_is_retried_on_its_own_before_the_publish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        outputs = observe(platform, AGENT_OUTPUTS)
        archive = services().archive
        save, order, failures = archive.save, [], [1]

        async def flaky_save(record: dict[str, Any]) -> bool:
            order.append("archive")
            if failures:
                failures.pop()
                raise ConnectionError("table storage is unreachable")
            return await save(record)

        sender = services().adapters.sender
        send = sender.send

        async def noting_send(topic: str, messages: Any) -> Any:
            if topic == AGENT_OUTPUTS:
                order.append("publish")
            return await send(topic, messages)

        monkeypatch.setattr(archive, "save", flaky_save)
        monkeypatch.setattr(sender, "send", noting_send)
        sent = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
        record = await finished_turn(platform, "clerk", sent["turn_id"])
        await settle(platform)
        assert record["outcome"] == "replied" and not record["error"]
        assert _scheduled(platform, sent["turn_id"]) == [
            "agent_policy", "agent_conclude", "agent_archive", "agent_publish"]
        assert order == ["archive", "archive", "publish"]  # nothing went out before the archive held
        assert len(_replies(platform, outputs, sent["turn_id"])) == 1
        assert [t["turn_id"] for t in await recent_turns(platform, "clerk")] == [sent["turn_id"]]


async def test_a_publish_failing_in_conclude_is_retried_on_its_own(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async with running(tmp_path / "state", config_paths=CLERK) as platform:
        outputs = observe(platform, AGENT_OUTPUTS)
        sender = services().adapters.sender
        send, failures = sender.send, [1]

        async def flaky_send(topic: str, messages: Any) -> Any:
            if topic == AGENT_OUTPUTS and failures:
                failures.pop()
                raise ConnectionError("the outputs topic is unreachable")
            return await send(topic, messages)

        monkeypatch.setattr(sender, "send", flaky_send)
        sent = await send_event(platform, "clerk", "ledger.entry", {"entry": 1})
        record = await finished_turn(platform, "clerk", sent["turn_id"])
        await settle(platform)
        assert record["outcome"] == "replied"
        assert _scheduled(platform, sent["turn_id"]) == ["agent_policy", "agent_conclude", "agent_publish"]
        assert len(_replies(platform, outputs, sent["turn_id"])) == 1
        assert [t["turn_id"] for t in await recent_turns(platform, "clerk")] == [sent["turn_id"]]
