"""The grant activity against the engine's real Durable API: a finished turn can never take it
(False), a turn not started yet makes it raise (the orchestration retries), a queued one takes it."""

from __future__ import annotations

from pathlib import Path

import pytest

from realm_of_agents.activities import grant
from tests.realm.platform_support import REPO, agent, finished_turn, ok, running, send_event, settle, wait_until

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

        await ok(platform, "POST", "agents/clerk/pause")
        first = await send_event(platform, "clerk", "ledger.entry", {"n": 2})
        second = await send_event(platform, "clerk", "ledger.entry", {"n": 3})
        await wait_until(lambda: _inbox(platform, 2), what="both events queued")
        assert await grant({"instance_id": second["turn_id"]}, client) is True  # a waiting turn takes it
        await ok(platform, "POST", "agents/clerk/resume")
        for turn in (first, second):
            assert (await finished_turn(platform, "clerk", turn["turn_id"]))["outcome"] == "replied"


async def _inbox(platform, size: int) -> bool:
    return (await agent(platform, "clerk"))["inbox"] == size
