"""Tool-call rate-limit counters on real table stores: the embedded SQLite one and Azure Table
storage (Azurite). Several store objects on the same data stand for several Function instances."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kernel.governance.ratelimit import ToolCallLimiter, Window, window_start
from tests.adapters.conftest import azurite  # noqa: F401  (the session's Azurite, for the "azure" backend)

NOW = datetime(2030, 1, 1, 10, 5, 30, tzinfo=timezone.utc)


@dataclass
class Backend:
    table: str
    make: Callable[[], Any]
    stores: list[Any] = field(default_factory=list)

    def limiter(self) -> ToolCallLimiter:
        """A limiter on a new store object over the same data, as another instance would have."""
        store = self.make()
        self.stores.append(store)
        return ToolCallLimiter(store, table=self.table)


@pytest.fixture(params=["embedded", "azure"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    table = f"rl{uuid.uuid4().hex[:12]}"
    if request.param == "embedded":
        from kernel.adapters.embedded_table import EmbeddedTableStore

        found = Backend(table, lambda: EmbeddedTableStore(tmp_path / "tables.sqlite"))
    else:
        from kernel.adapters.azure_table import AzureTableStore

        connection = request.getfixturevalue("azurite")
        found = Backend(table, lambda: AzureTableStore(connection_string=connection))
    try:
        yield found
    finally:
        for store in found.stores:
            await store.close()


async def test_calls_are_admitted_up_to_the_limit_then_refused_until_the_next_window(backend: Backend) -> None:
    limiter = backend.limiter()
    minute = [Window("minute", 3, ("paced",))]
    assert [(await limiter.admit("cfo", minute, now=NOW)).admitted for _ in range(3)] == [True] * 3
    refused = await limiter.admit("cfo", minute, now=NOW + timedelta(seconds=20))
    assert not refused.admitted and refused.window == minute[0] and refused.observed == 3
    assert refused.resets_at == datetime(2030, 1, 1, 10, 6, tzinfo=timezone.utc)
    assert (await limiter.admit("ceo", minute, now=NOW)).admitted  # another agent counts on its own
    # the next minute starts again at zero, in the same row
    assert (await limiter.admit("cfo", minute, now=NOW + timedelta(seconds=30))).admitted
    assert await limiter.counts("cfo", ["minute", "hour"], now=NOW + timedelta(seconds=30)) == {"minute": 1, "hour": 0}
    rows = await backend.stores[0].query(backend.table, "cfo")
    assert [row["RowKey"] for row in rows] == ["tools|minute"]


async def test_a_full_hour_refuses_and_gives_back_the_minute_it_took(backend: Backend) -> None:
    limiter = backend.limiter()
    windows = [Window("minute", 5, ("fast",)), Window("hour", 2, ("slow",))]
    assert (await limiter.admit("ops", windows, now=NOW)).admitted
    assert (await limiter.admit("ops", windows, now=NOW)).admitted
    refused = await limiter.admit("ops", windows, now=NOW)
    assert not refused.admitted and refused.window.name == "hour" and refused.window.policies == ("slow",)
    assert refused.resets_at == datetime(2030, 1, 1, 11, tzinfo=timezone.utc)
    assert await limiter.counts("ops", ["minute", "hour"], now=NOW) == {"minute": 2, "hour": 2}


async def test_concurrent_instances_never_admit_more_than_the_limit(backend: Backend) -> None:
    limiters = [backend.limiter() for _ in range(6)]
    windows = [Window("minute", 7), Window("hour", 100)]

    async def caller(limiter: ToolCallLimiter) -> list[bool]:
        return [(await limiter.admit("busy", windows, now=NOW)).admitted for _ in range(4)]

    results = await asyncio.gather(*(caller(limiter) for limiter in limiters))
    admitted = sum(sum(batch) for batch in results)
    assert admitted == 7  # 24 attempts, 7 slots: none lost, none given twice
    assert await limiters[0].counts("busy", ["minute", "hour"], now=NOW) == {"minute": 7, "hour": 7}


async def test_a_clock_a_little_ahead_does_not_reset_the_window_for_the_others(backend: Backend) -> None:
    ahead, behind = backend.limiter(), backend.limiter()
    minute = [Window("minute", 2)]
    assert (await ahead.admit("cto", minute, now=NOW.replace(second=59, microsecond=900_000)
                              + timedelta(seconds=0.2))).admitted  # already in 10:06 on that instance
    assert (await behind.admit("cto", minute, now=NOW.replace(second=59))).admitted  # counts in 10:06 too
    refused = await behind.admit("cto", minute, now=NOW.replace(second=59))
    assert not refused.admitted and refused.observed == 2


def test_windows_are_fixed_utc_windows() -> None:
    moment = datetime(2030, 3, 31, 3, 7, 42, tzinfo=timezone(timedelta(hours=2)))
    assert window_start("minute", moment) == datetime(2030, 3, 31, 1, 7, tzinfo=timezone.utc)
    assert window_start("hour", moment) == datetime(2030, 3, 31, 1, 0, tzinfo=timezone.utc)
    with pytest.raises(ValueError, match="unknown window 'day'"):
        Window("day", 1)
    with pytest.raises(ValueError, match="non-negative integer"):
        Window("minute", -1)


async def test_a_call_that_runs_again_under_its_ticket_is_not_counted_twice(backend: Backend) -> None:
    first, other = backend.limiter(), backend.limiter()  # the retry may land on another instance
    windows = [Window("minute", 2), Window("hour", 10)]
    assert (await first.admit("cfo", windows, now=NOW, ticket="turn-1:0")).admitted
    assert (await other.admit("cfo", windows, now=NOW + timedelta(seconds=5), ticket="turn-1:0")).admitted
    assert await first.counts("cfo", ["minute", "hour"], now=NOW) == {"minute": 1, "hour": 1}
    # the slot it did not take again is there for the next call; then the minute is full
    assert (await other.admit("cfo", windows, now=NOW, ticket="turn-1:1")).admitted
    refused = await first.admit("cfo", windows, now=NOW, ticket="turn-2:0")
    assert not refused.admitted and refused.observed == 2
    # calls without a ticket are counted each time, as before
    assert (await first.admit("ceo", windows, now=NOW)).admitted
    assert (await first.admit("ceo", windows, now=NOW)).admitted
    assert await first.counts("ceo", ["minute"], now=NOW) == {"minute": 2}


async def test_a_refused_call_gives_back_its_ticket_and_a_later_window_counts_it_anew(backend: Backend) -> None:
    limiter = backend.limiter()
    windows = [Window("minute", 5), Window("hour", 1)]
    assert (await limiter.admit("ops", windows, now=NOW, ticket="a")).admitted
    refused = await limiter.admit("ops", windows, now=NOW, ticket="b")  # the hour is full
    assert not refused.admitted and refused.window.name == "hour"
    assert await limiter.counts("ops", ["minute", "hour"], now=NOW) == {"minute": 1, "hour": 1}
    # "b" was given back in the minute: asked again, it is refused again, not waved through
    assert not (await limiter.admit("ops", windows, now=NOW, ticket="b")).admitted
    # the ticket of a window that ended is forgotten with it: the next window counts the call
    later = NOW + timedelta(hours=1)
    assert (await limiter.admit("ops", windows, now=later, ticket="a")).admitted
    assert await limiter.counts("ops", ["minute", "hour"], now=later) == {"minute": 1, "hour": 1}


async def test_a_window_remembers_its_last_tickets_only(backend: Backend) -> None:
    from kernel.governance.ratelimit import TICKETS_KEPT

    limiter = backend.limiter()
    minute = [Window("minute", TICKETS_KEPT + 10)]
    for n in range(TICKETS_KEPT + 1):
        assert (await limiter.admit("busy", minute, now=NOW, ticket=f"call-{n}")).admitted
    [row] = await backend.stores[0].query(backend.table, "busy")
    assert len(row["tickets"].split()) == TICKETS_KEPT  # the row stays small
    assert (await limiter.admit("busy", minute, now=NOW, ticket=f"call-{TICKETS_KEPT}")).admitted  # remembered
    assert (await limiter.admit("busy", minute, now=NOW, ticket="call-0")).admitted  # forgotten: counted again
    assert await limiter.counts("busy", ["minute"], now=NOW) == {"minute": TICKETS_KEPT + 2}
