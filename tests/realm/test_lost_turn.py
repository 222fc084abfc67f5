"""A queued turn that can no longer take its grant (terminated by an operator, purged) is skipped
and recorded; the agent goes on with the event after it instead of waiting forever."""

from __future__ import annotations

from pathlib import Path

from tests.realm.platform_support import REPO, agent, deadletters, finished_turn, ok, queue_while_paused, running, settle

CONFIGS = f"{REPO / 'tests' / 'realm' / 'configs'}"


async def test_a_terminated_queued_turn_is_skipped_and_the_next_one_runs(tmp_path: Path) -> None:
    async with running(tmp_path / "state", config_paths=CONFIGS) as platform:
        first, second = await queue_while_paused(platform, "clerk", 1, 2)
        await platform.host.client.terminate(first["turn_id"], "operator removed it")
        await settle(platform)

        await ok(platform, "POST", "agents/clerk/resume")
        turn = await finished_turn(platform, "clerk", second["turn_id"])
        assert turn["outcome"] == "replied"
        await settle(platform)  # the turn is archived before the entity records it finished
        state = await agent(platform, "clerk")
        assert state["status"] == "sleeping" and state["inbox"] == 0 and state["counters"]["turns"] == 1
        lost = [d for d in await deadletters(platform) if d["kind"] == "lost-turn"]
        assert len(lost) == 1 and first["turn_id"] in lost[0]["reason"]
