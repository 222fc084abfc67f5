"""Service Bus triggers skip entities they found drained until the bus reports a change or a
scheduled message, lock or time-to-live there falls due: idle ticks cost no bus queries."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from kernel.engine import EmbeddedHost, VirtualClock

from .conftest import app_path
from .test_triggers import SETTINGS, TOPOLOGY


def _bus_statements(host: EmbeddedHost, ticks: int) -> list[str]:
    seen: list[str] = []
    host.conn.set_trace_callback(lambda sql: seen.append(sql) if "bus_" in sql else None)
    try:
        for _ in range(ticks):
            host.engine.tick()
            host.engine.next_deadline()
    finally:
        host.conn.set_trace_callback(None)
    return seen


async def test_idle_ticks_do_not_query_the_bus_and_a_send_is_still_delivered() -> None:
    clock = VirtualClock(datetime(2031, 1, 1, 0, 1, tzinfo=timezone.utc))
    async with EmbeddedHost(app_path("messaging"), settings=SETTINGS, topology=TOPOLOGY, clock=clock) as host:
        await host.wait_idle()
        assert _bus_statements(host, 5) == []

        await host.send("events", {"kind": "now"}, message_id="m-now")
        await host.wait_idle()
        assert (await host.client.get_status("event-m-now")).output == "handled now"
        assert _bus_statements(host, 5) == []

        # a scheduled message: nothing is queried before its time, and it is delivered at its time
        await host.send("events", {"kind": "later"}, message_id="m-later", scheduled_at=clock.now() + timedelta(minutes=10))
        await host.wait_idle()
        assert host.service_bus.deadline() == clock.now() + timedelta(minutes=10)
        assert _bus_statements(host, 5) == []
        clock.advance(timedelta(minutes=10))
        await host.wait_idle()
        assert (await host.client.get_status("event-m-later")).output == "handled later"


async def test_a_message_left_locked_by_a_lost_delivery_comes_back_when_its_lock_expires() -> None:
    clock = VirtualClock(datetime(2031, 1, 1, 0, 1, tzinfo=timezone.utc))
    async with EmbeddedHost(app_path("messaging"), settings=SETTINGS, topology=TOPOLOGY, clock=clock) as host:
        await host.wait_idle()
        # someone else receives the message and never settles it (as a crashed receiver would)
        await host.send("events", {"kind": "stolen"}, message_id="m-stolen")
        [taken] = host.bus.receive("events/Subscriptions/starter")
        await host.wait_idle()
        assert not await host.client.get_status("event-m-stolen")
        assert host.service_bus.deadline() == taken.locked_until
        clock.advance(timedelta(seconds=61))
        await host.wait_idle()
        assert (await host.client.get_status("event-m-stolen")).output == "handled stolen"
