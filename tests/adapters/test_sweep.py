"""kernel/sweep.py on the SQLite table store: only rows still as they were read are deleted, a
limit leaves the rest for the next run, and a failing cleanup does not stop the sweep."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.sweep import delete_rows_below

NOW = datetime(2026, 11, 22, tzinfo=timezone.utc)


class _RewritesDuringTheSweep(EmbeddedTableStore):
    """A second writer: it rewrites one row between the sweep's query and its deletes."""

    rewrite: tuple[str, str] | None = None

    async def query_below(self, table: str, property_name: str, below: Any, *, limit: int | None = None) -> list[dict[str, Any]]:
        rows = await super().query_below(table, property_name, below, limit=limit)
        if self.rewrite is not None:
            pk, rk = self.rewrite
            self.rewrite = None
            await self.upsert(table, {"PartitionKey": pk, "RowKey": rk, "at": NOW - timedelta(days=1), "note": "renewed"})
        return rows


async def _fill(tables: EmbeddedTableStore, count: int, *, age: timedelta) -> None:
    for n in range(count):
        await tables.insert("swept", {"PartitionKey": f"p{n % 3}", "RowKey": f"r{n:03}", "at": NOW - age})


async def test_a_row_rewritten_since_it_was_read_stays(tmp_path: Path) -> None:
    tables = _RewritesDuringTheSweep(tmp_path / "t.sqlite")
    try:
        await _fill(tables, 5, age=timedelta(days=10))
        await tables.insert("swept", {"PartitionKey": "p0", "RowKey": "fresh", "at": NOW})
        tables.rewrite = ("p1", "r001")
        report = await delete_rows_below(tables, "swept", "at", NOW - timedelta(days=7))
        assert (report.deleted, report.more) == (4, False) and report.kept >= 1
        assert (await tables.get("swept", "p1", "r001"))["note"] == "renewed"
        assert await tables.get("swept", "p0", "fresh")
        assert [r["RowKey"] for r in await tables.query_below("swept", "at", NOW - timedelta(days=7))] == []
    finally:
        await tables.close()


async def test_the_limit_leaves_the_rest_for_the_next_run(tmp_path: Path) -> None:
    tables = EmbeddedTableStore(tmp_path / "t.sqlite")
    try:
        await _fill(tables, 25, age=timedelta(days=10))
        first = await delete_rows_below(tables, "swept", "at", NOW, limit=10)
        assert (first.deleted, first.more) == (10, True)
        second = await delete_rows_below(tables, "swept", "at", NOW)
        assert (second.deleted, second.more) == (15, False)
        assert await delete_rows_below(tables, "swept", "at", NOW) == type(second)("swept")
        assert (await delete_rows_below(tables, "missing", "at", NOW)).deleted == 0
    finally:
        await tables.close()


async def test_a_failing_cleanup_is_logged_and_the_sweep_goes_on(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    tables = EmbeddedTableStore(tmp_path / "t.sqlite")
    cleaned: list[str] = []

    async def cleanup(row: dict[str, Any]) -> None:
        if row["RowKey"] == "r001":
            raise OSError("the blob store is down")
        cleaned.append(row["RowKey"])

    try:
        await _fill(tables, 4, age=timedelta(days=10))
        with caplog.at_level(logging.WARNING, logger="aos.sweep"):
            report = await delete_rows_below(tables, "swept", "at", NOW, after_delete=cleanup)
        assert report.deleted == 4 and sorted(cleaned) == ["r000", "r002", "r003"]
        assert "cleanup after row (p1, r001) failed (OSError)" in caplog.text
    finally:
        await tables.close()
