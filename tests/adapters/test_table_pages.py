"""Reading a partition a page at a time, on the real embedded table store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.table_pages import rows_in_order


async def _store(tmp_path: Path, keys: list[str]) -> EmbeddedTableStore:
    store = EmbeddedTableStore(tmp_path / "tables.sqlite")
    for key in keys:
        await store.insert("things", {"PartitionKey": "p", "RowKey": key, "n": 1})
    await store.insert("things", {"PartitionKey": "other", "RowKey": "a", "n": 1})
    return store


async def test_every_row_once_in_order_across_pages(tmp_path: Path) -> None:
    keys = [f"k{n:02d}" for n in range(7)]
    store = await _store(tmp_path, keys)
    try:
        for page in (1, 2, 3, 7, 8):
            assert [row["RowKey"] async for row in rows_in_order(store, "things", "p", page=page)] == keys
        assert [row async for row in rows_in_order(store, "missing", "p", page=2)] == []
    finally:
        await store.close()


async def test_the_caller_may_update_or_delete_the_row_it_was_given_and_rows_created_ahead_are_read(
        tmp_path: Path) -> None:
    keys = [f"k{n:02d}" for n in range(7)]
    store = await _store(tmp_path, keys)
    try:
        seen = []
        async for row in rows_in_order(store, "things", "p", page=2):
            seen.append(row["RowKey"])
            if row["RowKey"] == "k01":
                await store.insert("things", {"PartitionKey": "p", "RowKey": "k05a", "n": 1})
            if row["RowKey"] in ("k01", "k03", "k06"):
                await store.delete("things", "p", row["RowKey"])
            else:
                await store.update("things", {"PartitionKey": "p", "RowKey": row["RowKey"], "n": 2}, etag=row["etag"])
        assert seen == ["k00", "k01", "k02", "k03", "k04", "k05", "k05a", "k06"]
    finally:
        await store.close()


async def test_other_tasks_run_between_pages(tmp_path: Path) -> None:
    """The embedded store answers without suspending, so a scan must give the loop a turn itself:
    a sync reading ten thousand registry rows would otherwise hold up every turn until it ends."""
    keys = [f"k{n:02d}" for n in range(7)]
    store = await _store(tmp_path, keys)
    ticks: list[str] = []

    async def ticker() -> None:
        while True:
            ticks.append("tick")
            await asyncio.sleep(0)

    try:
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0)
        ticks.clear()
        seen_between: list[int] = []
        async for _row in rows_in_order(store, "things", "p", page=2):
            seen_between.append(len(ticks))
        task.cancel()
        # four pages of two rows (the last short): the loop ran after the first, second and third
        assert seen_between == [0, 0, 1, 1, 2, 2, 3]
    finally:
        await store.close()
