"""The SQLite table store runs calls inline, and when another connection holds the write lock it
waits on its worker thread instead of blocking the event loop or failing."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

from kernel.adapters.embedded_table import EmbeddedTableStore


async def test_a_write_waits_for_another_writer_without_blocking_the_loop(tmp_path: Path) -> None:
    path = tmp_path / "tables.sqlite"
    store = EmbeddedTableStore(path)
    try:
        await store.upsert("things", {"PartitionKey": "p", "RowKey": "before", "n": 1})
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's writer holds the lock
        other.execute("DELETE FROM aos_table_entities WHERE rk = 'nothing'")
        write = asyncio.create_task(store.upsert("things", {"PartitionKey": "p", "RowKey": "during", "n": 2}))
        ticks = 0
        for _ in range(20):  # the loop keeps running while the write waits
            await asyncio.sleep(0.01)
            ticks += 1
        assert not write.done()
        read = await store.get("things", "p", "before")  # a reader is not blocked by the writer (WAL)
        assert read["n"] == 1
        other.execute("COMMIT")
        other.close()
        await asyncio.wait_for(write, 10)
        assert ticks == 20
        assert (await store.get("things", "p", "during"))["n"] == 2
        assert [e["RowKey"] for e in await store.query("things", "p")] == ["before", "during"]
    finally:
        await store.close()


async def test_the_worker_path_runs_the_same_call_when_the_inline_connection_is_busy(tmp_path: Path) -> None:
    store = EmbeddedTableStore(tmp_path / "tables.sqlite")
    try:
        await store.upsert("things", {"PartitionKey": "p", "RowKey": "a", "n": 1})
        taken = threading.Event()
        release = threading.Event()

        def hold() -> None:  # another thread is using the inline connection
            with store._inline_lock:
                taken.set()
                release.wait(10)

        holder = threading.Thread(target=hold)
        holder.start()
        taken.wait(10)
        etag = await store.upsert("things", {"PartitionKey": "p", "RowKey": "b", "n": 2})
        release.set()
        holder.join()
        assert (await store.get("things", "p", "b"))["etag"] == etag
    finally:
        await store.close()


async def test_an_in_memory_store_is_one_database(tmp_path: Path) -> None:
    store = EmbeddedTableStore(":memory:")
    try:
        await store.insert("things", {"PartitionKey": "p", "RowKey": "a"})
        assert (await store.get("things", "p", "a"))["RowKey"] == "a"
    finally:
        await store.close()
