"""AOS_EMBEDDED_SYNC sets one durability for the embedded engine, tables and blobs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from kernel import durability
from kernel.adapters.factory import Adapters
from kernel.engine.host import EmbeddedHost

APP = Path(__file__).resolve().parents[1] / "function_app.py"


def _synchronous(path: Path) -> int:
    return sqlite3.connect(path).execute("PRAGMA synchronous").fetchone()[0]


def test_the_setting_reads_normal_by_default_and_names_itself_when_wrong() -> None:
    assert durability.sync_mode(None) == durability.sync_mode(" ") == "normal"
    assert durability.sync_mode("FULL") == "full"
    with pytest.raises(ValueError, match="AOS_EMBEDDED_SYNC='sometimes'.*'normal'.*'full'"):
        durability.sync_mode("sometimes")


@pytest.mark.parametrize(("mode", "synchronous", "fsync"), [("normal", "NORMAL", False), ("full", "FULL", True)])
async def test_the_adapters_follow_the_setting(tmp_path: Path, mode: str, synchronous: str, fsync: bool) -> None:
    adapters = Adapters({"AOS_EMBEDDED_SYNC": mode}, app_root=tmp_path)
    try:
        assert adapters.blobs._fsync is fsync
        await adapters.tables.upsert("things", {"PartitionKey": "p", "RowKey": "r"})
        assert adapters.tables._synchronous == synchronous
        conn = adapters.tables._inline
        assert conn is not None and conn.execute("PRAGMA synchronous").fetchone()[0] == {"NORMAL": 1, "FULL": 2}[synchronous]
    finally:
        await adapters.close()


async def test_a_wrong_value_fails_the_adapters_with_the_setting_named(tmp_path: Path) -> None:
    adapters = Adapters({"AOS_EMBEDDED_SYNC": "yes"}, app_root=tmp_path)
    with pytest.raises(ValueError, match="AOS_EMBEDDED_SYNC"):
        adapters.blobs
    await adapters.close()


@pytest.mark.parametrize(("mode", "level"), [("normal", 1), ("full", 2)])
async def test_the_engine_state_follows_the_setting(tmp_path: Path, mode: str, level: int) -> None:
    async with EmbeddedHost(APP, state_path=tmp_path / "engine.sqlite",
                            settings={"AOS_EMBEDDED_SYNC": mode, "AOS_APP_ROLES": "kernel",
                                      "AOS_STATE_DIR": str(tmp_path / "state")}) as host:
        assert host.conn.execute("PRAGMA synchronous").fetchone()[0] == level
