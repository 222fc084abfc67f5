"""The grant activity against the engine's real Durable API: a finished turn can never take it
(False), a turn not started yet makes it raise (the orchestration retries), a queued one takes it.
A grant for the agent's current event carries the agent's state, and the queued turn starts on it
without asking the entity again; any other grant only wakes the turn, which asks again."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from realm_of_agents.activities import grant
from realm_of_agents.turn import GRANT_EVENT, _granted_state
from tests.realm.platform_support import (REPO, agent, entity_operations, finished_turn, ok, queue_while_paused,
                                         running, send_event, settle, turn_history)

CONFIGS = f"{REPO / 'tests' / 'realm' / 'configs'}"


async def test_grant_tells_finished_missing_and_waiting_turns_apart(tmp_path: Path) -> None:
    async with running(tmp_path / "state", config_paths=CONFIGS) as platform:
        client = platform.host.client
        done = await send_event(platform, "clerk", "ledger.entry", {"n": 1})
        await finished_turn(platform, "clerk", done["turn_id"])
        await settle(platform)
        assert await grant({"instance_id": done["turn_id"]}, client) is False

        with pytest.raises(LookupError, match="does not exist"):
            await grant({"instance_id": "no-such-turn"}, client)

        first, second = await queue_while_paused(platform, "clerk", 2, 3)
        # a waiting turn takes it; its event is not the agent's current one, so the grant carries no
        # state and the turn asks the entity again (and waits on: the first event is ahead of it)
        out_of_turn = {"instance_id": second["turn_id"], "agent_id": "clerk", "event_id": second["event_id"]}
        assert await grant(out_of_turn, client) is True
        await settle(platform)
        assert _grants(platform, second["turn_id"]) == [{"granted": True}]
        assert entity_operations(platform, second["turn_id"]) == [["begin", "context"], ["begin", "context"]]
        await ok(platform, "POST", "agents/clerk/resume")
        records = [await finished_turn(platform, "clerk", turn["turn_id"]) for turn in (first, second)]
        assert [r["outcome"] for r in records] == ["replied", "replied"]
        assert records[0]["finished"] <= records[1]["started"], "the second event still waited for the first"


async def test_a_queued_turn_starts_on_the_state_its_grant_carries(tmp_path: Path) -> None:
    async with running(tmp_path / "state", config_paths=CONFIGS) as platform:
        first, second = await queue_while_paused(platform, "clerk", 1, 2)
        # resuming hands the first event over (the resume command's grant), its turn's finish the second
        await ok(platform, "POST", "agents/clerk/resume")
        records = [await finished_turn(platform, "clerk", turn["turn_id"]) for turn in (first, second)]
        await settle(platform)
        assert [r["outcome"] for r in records] == ["replied", "replied"]
        for turn in (first, second):
            # asked once, while queued; granted with the state, the turn went straight to work
            assert entity_operations(platform, turn["turn_id"]) == [["begin", "context"], ["finish"]]
            (carried,) = _grants(platform, turn["turn_id"])
            assert carried["event_id"] == turn["event_id"] and carried["state"]["current"] == turn["event_id"]
            assert "inbox" not in carried["state"] and "processed" not in carried["state"]  # the turn's view only
        # the second turn's state is the agent's as the first turn's finish left it: it remembers that turn
        remembered = [t["turn_id"] for t in _grants(platform, second["turn_id"])[0]["state"]["memory"]["window"]]
        assert remembered == [first["turn_id"]]
        state = await agent(platform, "clerk")
        assert state["status"] == "sleeping" and state["counters"]["turns"] == 2 and state["inbox"] == 0


def test_a_grant_is_taken_as_the_state_only_for_its_own_current_event() -> None:
    state = {"id": "clerk", "current": "e1", "memory": {}}
    assert _granted_state({"granted": True, "event_id": "e1", "state": state}, "e1") == state
    assert _granted_state({"granted": True}, "e1") is None  # from the previous code, or no state read
    assert _granted_state({"granted": True, "event_id": "e2", "state": state}, "e1") is None
    assert _granted_state({"granted": True, "event_id": "e1", "state": {**state, "current": "e0"}}, "e1") is None
    assert _granted_state({"granted": True, "event_id": "e1", "state": "broken"}, "e1") is None
    assert _granted_state(None, "e1") is None


def _grants(platform: Any, turn_id: str) -> list[Any]:
    """What each grant raised to the turn carried."""
    return [json.loads(e["Input"]) for e in turn_history(platform, turn_id)
            if e["EventType"] == "EventRaised" and e.get("Name") == GRANT_EVENT]
