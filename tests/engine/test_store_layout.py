"""The history table's layout: new state files get a rowid table, files made before keep their
WITHOUT ROWID table, and the engine runs, stops and resumes on either with the same results."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from kernel.engine import EmbeddedHost

from .conftest import app_path

#: df_history as state files made before round 13 (docs/performance.md) have it
_OLD_HISTORY = """
CREATE TABLE df_history (
    instance_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, idx)
) WITHOUT ROWID;
"""


def _history_sql(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        return conn.execute("SELECT sql FROM sqlite_schema WHERE name = 'df_history'").fetchone()[0]


async def _chain_twice(state: Path) -> tuple[list[str], list[str]]:
    """Run the chaining sample once, stop, reopen the file and run it again; return both histories
    as the second host reads them back from the file."""
    async with EmbeddedHost(app_path("chaining"), state_path=state) as host:
        first = await host.client.start_new("hello_cities", "first")
        await host.wait_idle()
    async with EmbeddedHost(app_path("chaining"), state_path=state) as host:
        second = await host.client.start_new("hello_cities", "second")
        await host.wait_idle()
        for instance_id in (first, second):
            status = await host.client.get_status(instance_id)
            assert status.runtime_status.value == "Completed", instance_id
            assert status.output == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]
        return host.store.load_history(first), host.store.load_history(second)


@pytest.mark.parametrize("layout", ["new", "before round 13"])
async def test_histories_survive_a_restart_in_either_layout(tmp_path: Path, layout: str) -> None:
    state = tmp_path / "state.sqlite"
    if layout != "new":
        with sqlite3.connect(state) as conn:
            conn.executescript(_OLD_HISTORY)
    first, second = await _chain_twice(state)

    assert ("WITHOUT ROWID" in _history_sql(state)) is (layout != "new")
    # each history read back whole and in order: three activities scheduled and completed, then
    # the orchestration's completion with its output
    for history in (first, second):
        events = [json.loads(raw) for raw in history]
        scheduled = [(e["EventId"], e["Input"]) for e in events if e["EventType"] == 4]
        completed = [(e["TaskScheduledId"], e["Result"]) for e in events if e["EventType"] == 5]
        assert scheduled == [(0, '"Tokyo"'), (1, '"Seattle"'), (2, '"London"')]
        assert completed == [(0, '"Hello Tokyo!"'), (1, '"Hello Seattle!"'), (2, '"Hello London!"')]
        finished = [e for e in events if e["EventType"] == 1]
        assert len(finished) == 1 and json.loads(finished[0]["Result"])[-1] == "Hello London!"
