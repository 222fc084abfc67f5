"""After a burst of runs, once nothing has run for a moment, the engine gives memory back
(kernel/engine/heap.py): the entity states it cached, its SQLite connection's page cache and the C
heap's free pages. A pause
inside the burst does not, and the engine works on afterwards from a cold cache."""

from __future__ import annotations

import asyncio
from pathlib import Path

import azure.durable_functions as df
import pytest

from kernel.engine import EmbeddedHost
from kernel.engine import heap

from .conftest import app_path

Status = df.OrchestrationRuntimeStatus


async def _add(host: EmbeddedHost, key: str, times: int) -> None:
    for amount in range(1, times + 1):
        host.engine.signal_entity("Counter", key, "add", f'{{"amount": {amount}}}')
    await host.wait_idle()


async def test_a_quiet_engine_releases_memory_after_a_burst_and_runs_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "RELEASE_AFTER_RUNS", 8)
    monkeypatch.setattr(heap, "RELEASE_AFTER_QUIET_SECONDS", 0.2)
    async with EmbeddedHost(app_path("counter"), state_path=tmp_path / "engine.sqlite") as host:
        engine = host.engine
        for key in range(10):  # ten entity batches at a time, with pauses shorter than the quiet period
            await _add(host, f"k{key}", 3)
            assert engine.memory_releases == 0
        assert engine.runs_since_release >= 8 and len(engine.entity_states) == 10
        await asyncio.sleep(0.5)
        assert engine.memory_releases == 1 and engine.runs_since_release == 0
        assert len(engine.entity_states) == 0  # the counters' parsed states: read back from the store

        await asyncio.sleep(0.5)  # quiet without new runs: nothing more to give back
        assert engine.memory_releases == 1
        users = [await host.client.start_new("counter_user", None, f"user-{n}") for n in range(3)]
        await _add(host, "k0", 2)
        for instance_id in users:
            assert (await host.client.get_status(instance_id)).runtime_status == Status.Completed
        state = await host.client.read_entity_state(df.EntityId("Counter", "k0"))
        assert state.entity_state == 6 + 3


async def test_a_small_burst_keeps_the_caches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(heap, "RELEASE_AFTER_QUIET_SECONDS", 0.05)
    async with EmbeddedHost(app_path("counter")) as host:
        await _add(host, "few", 5)
        await asyncio.sleep(0.2)
        assert host.engine.memory_releases == 0 and 0 < host.engine.runs_since_release < heap.RELEASE_AFTER_RUNS


def test_release_drops_page_caches_and_tolerates_a_closed_connection(tmp_path: Path) -> None:
    import sqlite3

    live = sqlite3.connect(tmp_path / "a.sqlite")
    live.execute("CREATE TABLE t (v BLOB)")
    live.executemany("INSERT INTO t VALUES (?)", [(b"x" * 4000,) for _ in range(200)])
    live.commit()
    closed = sqlite3.connect(tmp_path / "b.sqlite")
    closed.close()
    heap.release([closed, live])  # the closed one is skipped; the live one still answers
    assert live.execute("SELECT COUNT(*) FROM t").fetchone()[0] == 200
