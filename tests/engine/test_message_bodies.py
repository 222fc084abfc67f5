"""Pending messages past ``MIRRORED_BODIES`` keep their bodies in the store only (kernel/engine/
engine.py): they are read back when their target runs, so orchestrations, entities, held events
and timers come out exactly as with every body in memory, and the count returns to zero."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import azure.durable_functions as df
import pytest

from kernel.engine import EmbeddedHost, VirtualClock
from kernel.engine import engine as engine_module

from .conftest import app_path

Status = df.OrchestrationRuntimeStatus
START = datetime(2031, 3, 1, tzinfo=timezone.utc)


def _in_store_only(host: EmbeddedHost) -> int:
    engine = host.engine
    pending = [m for msgs in (*engine.ready_orch.values(), *engine.ready_entity.values()) for m in msgs]
    pending += [m for _, _, m in engine.future]
    return sum(1 for m in pending if m.body is None)


async def test_entity_operations_and_orchestrations_past_the_bound_run_as_before(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine_module, "MIRRORED_BODIES", 3)
    async with EmbeddedHost(app_path("counter")) as host:
        for amount in range(1, 41):  # queued without yielding to the scheduler in between
            host.engine.signal_entity("Counter", "many", "add", f'{{"amount": {amount}}}')
        assert _in_store_only(host) >= 37 and host.engine.mirrored_bodies <= 3
        users = [await host.client.start_new("counter_user", None, f"user-{n}") for n in range(6)]
        await host.wait_idle()
        assert (await host.client.read_entity_state(df.EntityId("Counter", "many"))).entity_state == sum(range(1, 41))
        for instance_id in users:
            status = await host.client.get_status(instance_id)
            assert status.runtime_status == Status.Completed, status.output
            assert status.output["current"] == 15 and "counter refuses" in status.output["failed"]
        assert host.engine.mirrored_bodies == 0


async def test_held_events_and_timers_come_back_after_a_restart_with_bodies_in_the_store(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state = tmp_path / "engine.sqlite"
    async with EmbeddedHost(app_path("patterns"), state_path=state, clock=VirtualClock(START)) as host:
        client = host.client
        sleepers = [await client.start_new("long_sleep", f"sleep-{n}") for n in range(4)]
        waiters = [await client.start_new("waiter", f"wait-{n}") for n in range(3)]
        await host.wait_idle()
        for instance_id in waiters[:2]:
            await client.suspend(instance_id, "hold")
        await host.wait_idle()
        for instance_id in waiters:
            await client.raise_event(instance_id, "go", {"for": instance_id})
        await host.wait_idle()
    monkeypatch.setattr(engine_module, "MIRRORED_BODIES", 1)
    clock = VirtualClock(START)
    async with EmbeddedHost(app_path("patterns"), state_path=state, clock=clock) as host:
        client = host.client
        assert sum(len(msgs) for msgs in host.engine.held.values()) == 2
        assert _in_store_only(host) == 3, "four timers pending, one body mirrored"
        for instance_id in waiters[:2]:
            await client.resume(instance_id, "go on")
        clock.advance(timedelta(days=11))
        await host.wait_idle()
        for instance_id in waiters:
            done = await client.get_status(instance_id)
            assert done.runtime_status == Status.Completed and done.output == {"for": instance_id}
        for instance_id in sleepers:
            done = await client.get_status(instance_id)
            assert done.runtime_status == Status.Completed and done.output == "woke"
        assert host.engine.mirrored_bodies == 0


async def test_a_dropped_instance_gives_back_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Restarting an instance drops its pending messages: the count follows."""
    monkeypatch.setattr(engine_module, "MIRRORED_BODIES", 2)
    async with EmbeddedHost(app_path("patterns"), clock=VirtualClock(START)) as host:
        await host.client.start_new("long_sleep", "again")
        await host.wait_idle()
        assert host.engine.mirrored_bodies == 1  # its timer
        await host.client.terminate("again", "restart it")
        await host.wait_idle()
        await host.client.start_new("long_sleep", "again")
        await host.wait_idle()
        assert host.engine.mirrored_bodies == 1
        host.clock.advance(timedelta(days=11))
        await host.wait_idle()
        assert (await host.client.get_status("again")).output == "woke"
        assert host.engine.mirrored_bodies == 0
