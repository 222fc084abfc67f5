"""Scheduled workflows end to end: the unmodified function_app.py on the embedded engine, the
`workflow_schedule` orchestration on durable timers (real clock), its fire activity and the sync.

A workflow dropped into the config folder while the platform runs starts its schedule at once (the
config watcher runs the workflow sync, not only the five-minute timer); each occurrence starts one
run whose id is its fire time, also across a restart of the platform on the same state."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from kernel.workflows import ids
from realm_of_agents.ids import turn_instance_id
from tests.realm.platform_support import archived_turn, ok, running, wait_until
from tests.workflows.support import CONFIGS, finished, write_workflow

EVERY_TWO_SECONDS = "*/2 * * * * *"


def _scheduled(folder: Path) -> Path:
    return write_workflow(folder, {"id": "tick", "trigger": {"schedule": EVERY_TWO_SECONDS, "input": {"n": 1}},
                                   "steps": [{"id": "look", "agent": "analyst", "event": "analysis.tick",
                                              "data": {"n": "{{ input.n }}"}}]})


async def _runs(platform: Any) -> list[dict[str, Any]]:
    return (await ok(platform, "GET", "workflows/runs?workflow=tick&limit=500"))["runs"]


async def _at_least(platform: Any, count: int, timeout: float = 30.0) -> list[dict[str, Any]]:
    async def enough() -> list[dict[str, Any]] | None:
        rows = await _runs(platform)
        return rows if len(rows) >= count else None

    return await wait_until(enough, timeout=timeout, interval=0.2, what=f"{count} scheduled runs")


def _fire_time(run_id: str) -> datetime:
    prefix = ids.run_id("tick", "s")
    assert run_id.startswith(prefix), run_id
    return datetime.strptime(run_id[len(prefix):], "%Y%m%dT%H%M%S")


async def test_a_dropped_scheduled_workflow_starts_one_run_per_occurrence_also_across_a_restart(
        tmp_path: Path) -> None:
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "analyst.yaml").write_text((CONFIGS / "analyst.yaml").read_text())
    state = tmp_path / "state"
    async with running(state, config_paths=str(folder), watch_interval=0.2) as platform:
        assert await _runs(platform) == []
        _scheduled(folder)  # no sync call and no five-minute timer: the watcher starts the schedule
        before = await _at_least(platform, 2)
        first = await finished(platform, before[-1]["run_id"])
        turn = await archived_turn(platform, "analyst",
                                   turn_instance_id("analyst", ids.attempt_id(before[-1]["run_id"], "look", 1)))
        synced = await ok(platform, "POST", "workflows/sync")  # the schedule runs: nothing new to start
    async with running(state, config_paths=str(folder)) as platform:
        seen = {row["run_id"] for row in before}
        after = await wait_until(lambda: _new_runs(platform, seen, 2), timeout=30, interval=0.2,
                                 what="scheduled runs after the restart")
        rows = await _runs(platform)
        views = [await finished(platform, row["run_id"]) for row in rows[:3]]

    assert first["status"] == "completed" and first["trigger"]["kind"] == "schedule"
    assert first["trigger"]["cron"] == EVERY_TWO_SECONDS and first["input"] == {"n": 1}
    assert turn["event"]["data"] == {"n": 1} and turn["outcome"] == "replied"
    assert synced["schedules_started"] == []
    run_ids = [row["run_id"] for row in rows]
    assert len(run_ids) == len(set(run_ids)), run_ids  # one run per occurrence
    fire_times = sorted(_fire_time(run_id) for run_id in run_ids)
    assert all(moment.second % 2 == 0 for moment in fire_times), fire_times
    assert set(after) <= set(run_ids) and not set(after) & seen
    assert all(view["status"] == "completed" for view in views), views
    assert all(view["trigger"]["fire_time"].startswith(_fire_time(view["run_id"]).isoformat()) for view in views)


async def _new_runs(platform: Any, seen: set[str], count: int) -> list[str] | None:
    fresh = [row["run_id"] for row in await _runs(platform) if row["run_id"] not in seen]
    return fresh if len(fresh) >= count else None
