"""History retention (realm_of_agents/retention.py): finished turns and commands leave the task
hub; running turns, workflow runs sharing the hub, archive records and agent state stay; the
agent goes on as before."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kernel.platform import Platform
from realm_of_agents import retention
from tests.realm.platform_support import (
    agent,
    archived_turn,
    finished_turn,
    ok,
    queue_while_paused,
    running,
    send_event,
    settle,
)
from tests.workflows.support import config_paths, finished, run_view, start, write_workflow


def _instances(platform: Platform, prefix: str = "") -> dict[str, str]:
    return {row["instanceId"]: row["runtimeStatus"] for row in platform.host.engine.query(prefix=prefix or None)}


async def test_finished_realm_instances_are_purged_and_everything_else_stays(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "ask", "steps": [
        {"id": "ask", "agent": "analyst", "event": "analysis.start", "data": {"topic": "retention"}}]})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        run_id = await start(platform, "ask", {})
        await finished(platform, run_id)
        sent = [await send_event(platform, "analyst", "analysis.note", {"n": n}) for n in range(3)]
        for answer in sent:
            await finished_turn(platform, "analyst", answer["turn_id"])
        queued = await queue_while_paused(platform, "reviewer", 1, 2)
        await settle(platform)
        before = _instances(platform)
        finished_turns = {i for i, s in _instances(platform, "turn-").items() if s == "Completed"}
        commands = set(_instances(platform, "command-"))
        assert {a["turn_id"] for a in sent} <= finished_turns and commands
        turns_before = (await agent(platform, "analyst"))["counters"]["turns"]

        report = await retention.purge_finished(platform.host.client, datetime.now(timezone.utc) + timedelta(seconds=1))

        after = _instances(platform)
        assert report.purged["turn-"] == len(finished_turns) and report.purged["command-"] == len(commands)
        assert report.failed == 0 and not report.more
        assert set(after) == set(before) - finished_turns - commands
        assert all(platform.host.store.load_history(i) == [] for i in finished_turns | commands)
        # kept: the waiting turns, the workflow run (its history is its record), the archive, the state
        assert {q["turn_id"] for q in queued} <= set(after) and run_id in after
        assert (await run_view(platform, run_id))["status"] == "completed"
        for answer in sent:
            assert (await archived_turn(platform, "analyst", answer["turn_id"]))["outcome"] == "replied"
        assert (await agent(platform, "analyst"))["counters"]["turns"] == turns_before

        # the agents go on: the queued turns run, a new event takes a turn
        await ok(platform, "POST", "agents/reviewer/resume")
        for q in queued:
            await finished_turn(platform, "reviewer", q["turn_id"])
        later = await send_event(platform, "analyst", "analysis.note", {"n": 9})
        await finished_turn(platform, "analyst", later["turn_id"])
        await settle(platform)
        assert (await agent(platform, "analyst"))["counters"]["turns"] == turns_before + 1
        # a second run finds only what finished since
        again = await retention.purge_finished(platform.host.client, datetime.now(timezone.utc) + timedelta(seconds=1))
        assert again.purged["turn-"] == 3


async def test_the_limit_leaves_the_rest_for_the_next_run(tmp_path: Path) -> None:
    async with running(tmp_path / "state", config_paths=config_paths()) as platform:
        sent = [await send_event(platform, "analyst", "analysis.note", {"n": n}) for n in range(4)]
        for answer in sent:
            await finished_turn(platform, "analyst", answer["turn_id"])
        await settle(platform)
        cutoff = datetime.now(timezone.utc) + timedelta(seconds=1)
        first = await retention.purge_finished(platform.host.client, cutoff, limit=3)
        assert first.total == 3 and first.more
        second = await retention.purge_finished(platform.host.client, cutoff)
        assert second.purged["turn-"] + first.purged["turn-"] == 4 and not second.more
        assert not _instances(platform, "turn-")


async def test_the_setting_is_read_as_days_and_zero_keeps_everything(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert retention.retention({}) == timedelta(days=7)
    assert retention.retention({retention.SETTING: "0.5"}) == timedelta(hours=12)
    assert retention.retention({retention.SETTING: " 0 "}) is None
    for bad in ("seven", "-1", "nan", "inf", ""):
        with pytest.raises(ValueError, match=f"{retention.SETTING} must be a number of days.*{bad!r}"):
            retention.retention({retention.SETTING: bad})

    async with running(tmp_path / "state", config_paths=config_paths()) as platform:
        answer = await send_event(platform, "analyst", "analysis.note", {"n": 1})
        await finished_turn(platform, "analyst", answer["turn_id"])
        await settle(platform)
        later = datetime.now(timezone.utc) + timedelta(days=30)
        assert await retention.run(platform.host.client, now=later, environ={retention.SETTING: "0"}) is None
        assert answer["turn_id"] in _instances(platform)
        with caplog.at_level(logging.INFO, logger="aos.realm.retention"):
            report = await retention.run(platform.host.client, now=later, environ={})
        assert report is not None and report.purged["turn-"] >= 1
        assert answer["turn_id"] not in _instances(platform)
        assert "retention: purged" in caplog.text


async def test_expired_cache_entries_and_approvals_past_the_retention_are_swept(tmp_path: Path) -> None:
    from kernel.adapters.embedded_table import EmbeddedTableStore
    from kernel.inference.cache import TABLE as CACHE_TABLE, ResponseCache
    from kernel.inference.port import Completion, Usage
    from realm_of_agents.approvals import ApprovalStore

    tables = EmbeddedTableStore(tmp_path / "tables.sqlite")
    cache, approvals = ResponseCache(tables), ApprovalStore(tables)
    now = datetime.now(timezone.utc)
    answer = Completion(content="cached", tool_calls=[], provider="openai-compatible", model="m", usage=Usage(1, 1))
    try:
        assert await cache.put("default", "short", answer, ttl_seconds=10)
        assert await cache.put("default", "long", answer, ttl_seconds=30 * 86400)
        for name, deadline in (("turn-a.0", now - timedelta(days=1)), ("turn-b.0", now + timedelta(hours=1))):
            await approvals.request(approval=name, agent_id="clerk", turn_id=name[:-2], server="scratch",
                                    tool="edit_file", arguments={}, deadline=deadline, event_type="ledger.entry")
        await approvals.decided("turn-a.0", {"approved": False, "by": "deadline"})

        off = await retention.sweep_tables(tables, now=now + timedelta(days=7), environ={retention.SETTING: "0"})
        assert [(r.table, r.deleted) for r in off] == [(CACHE_TABLE, 1)]  # expired answers go whatever the setting
        assert await cache.get("default", "long") is not None
        assert {a["id"] for a in [await approvals.get("turn-a.0"), await approvals.get("turn-b.0")]} == {"turn-a.0", "turn-b.0"}

        on = await retention.sweep_tables(tables, now=now + timedelta(days=7), environ={})
        assert [(r.table, r.deleted) for r in on] == [(CACHE_TABLE, 0), ("approvals", 1)]
        assert (await approvals.get("turn-b.0"))["status"] == "pending"  # its deadline is newer than the cutoff
        with pytest.raises(Exception, match="no approval 'turn-a.0'"):
            await approvals.get("turn-a.0")
        assert await cache.get("default", "long") is not None
    finally:
        await tables.close()
