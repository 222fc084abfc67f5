"""Purging by time and status (what history retention does): only finished instances created in
the window go, with their histories; running ones stay whatever the filter says; a purged id can
be started again; and it holds across a restart on the state file."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from azure.durable_functions.models.OrchestrationRuntimeStatus import (
    OrchestrationRuntimeStatus as Status,
)

from kernel.engine import EmbeddedHost, VirtualClock

from .conftest import app_path

APP = app_path("patterns")
START = datetime(2031, 5, 1, tzinfo=timezone.utc)
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


async def _status(host: EmbeddedHost, instance_id: str) -> str | None:
    status = await host.client.get_status(instance_id)
    return None if status is None or status.runtime_status is None else status.runtime_status.value


async def test_purge_by_deletes_finished_instances_before_the_cutoff_and_nothing_else(tmp_path: Path) -> None:
    state = tmp_path / "state.sqlite"
    clock = VirtualClock(START)
    async with EmbeddedHost(APP, clock=clock, state_path=state) as host:
        client = host.client
        old_done = [await client.start_new("fan_out_fan_in", f"old-done-{n}", 3) for n in range(30)]
        await client.start_new("failing", "old-failed")
        await client.start_new("waiter", "old-waiting")  # running: never purged
        await host.wait_idle()
        clock.advance(timedelta(hours=2))
        await client.start_new("fan_out_fan_in", "new-done", 3)
        await host.wait_idle()
        assert await _status(host, "old-failed") == "Failed"
        assert host.store.load_history("old-done-0")

        cutoff = START + timedelta(hours=1)
        # a status list naming a running status purges no running instance
        purged = await client.purge_instance_history_by(EPOCH, cutoff, [Status.Completed, Status.Failed,
                                                                        Status.Terminated, Status.Running])
        assert purged.instances_deleted == 31

        for instance_id in [*old_done, "old-failed"]:
            assert await _status(host, instance_id) is None, instance_id
            assert host.store.load_history(instance_id) == []
        assert await _status(host, "old-waiting") == "Running"
        assert await _status(host, "new-done") == "Completed"
        again = await client.purge_instance_history_by(EPOCH, cutoff)
        assert again.instances_deleted == 0

        # the running one still works, and a purged id is free to run again
        await client.raise_event("old-waiting", "go", 7)
        await client.start_new("fan_out_fan_in", "old-done-0", 2)
        await host.wait_idle()
        assert await _status(host, "old-waiting") == "Completed"
        assert (await client.get_status("old-done-0")).output == 5

    async with EmbeddedHost(APP, clock=clock, state_path=state) as host:  # the file agrees after a restart
        remaining = sorted(s.instance_id for s in await host.client.get_status_all())
        assert remaining == ["new-done", "old-done-0", "old-waiting"]
