"""Schedules from config wake agents through durable timers (virtual clock, real function_app.py)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

from kernel.engine.clock import VirtualClock
from kernel.platform import Platform

REPO = Path(__file__).resolve().parents[2]
SUNDAY_EVENING = datetime(2026, 11, 22, 22, 0, tzinfo=timezone.utc)  # the CFO's forecast runs Mondays 07:00


async def _turns(platform: Platform, agent_id: str) -> list[dict]:
    status, body = await platform.api("GET", f"agents/{agent_id}/turns?limit=50")
    assert status == 200, body
    return body["turns"]


async def test_a_weekly_schedule_wakes_the_agent_once_per_occurrence(tmp_path: Path) -> None:
    clock = VirtualClock(SUNDAY_EVENING)
    async with Platform(state_dir=tmp_path / "state", port=0, clock=clock,
                        config_paths=f"{REPO / 'agent_configs'},{REPO / 'mcp_configs'}") as platform:
        await platform.wait_idle(20)
        # started by a sync at start (the platform's, or the sync timer's that runs on startup beside it)
        started = [status.instance_id for status in await platform.host.client.get_status_all()]
        assert any(i.startswith("schedule-cfo-weekly-forecast-") for i in started), started
        assert await _turns(platform, "cfo") == []

        clock.set(datetime(2026, 11, 23, 7, 0, 1, tzinfo=timezone.utc))
        for _ in range(100):
            await platform.wait_idle(20)
            turns = await _turns(platform, "cfo")
            if turns:
                break
            await asyncio.sleep(0.05)
        assert [t["event_type"] for t in turns] == ["finance.forecast.due"]
        status, turn = await platform.api("GET", f"agents/cfo/turns/{turns[0]['turn_id']}")
        assert turn["event"]["source"] == "schedule/weekly-forecast"
        assert turn["event"]["id"] == "schedule:cfo:weekly-forecast:2026-11-23T07:00:00+00:00"
        assert turn["outcome"] == "replied"

        clock.advance(timedelta(hours=1))  # no new occurrence within the week
        await platform.wait_idle(20)
        assert len(await _turns(platform, "cfo")) == 1
        clock.set(datetime(2026, 11, 30, 7, 0, 1, tzinfo=timezone.utc))
        for _ in range(100):
            await platform.wait_idle(20)
            if len(await _turns(platform, "cfo")) == 2:
                break
            await asyncio.sleep(0.05)
        assert len(await _turns(platform, "cfo")) == 2
