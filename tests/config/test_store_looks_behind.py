"""Once configs are loaded, the files are looked at on a thread of their own: a reader on the event
loop never waits for a look (at 10,000 files a look and reload held the loop for most of a second)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from kernel.config.store import ConfigStore


def _agent(agent_id: str, display_name: str) -> dict[str, object]:
    return {"kind": "agent", "id": agent_id, "display_name": display_name,
            "purpose": f"Keep the {agent_id} ledger current and explain changes.",
            "goals": [{"id": "current", "description": "Post every entry within a day.", "priority": 1}],
            "subscriptions": [{"event_types": [f"{agent_id}.*"]}]}


def _write(folder: Path, display_name: str) -> None:
    (folder / "clerk.json").write_text(json.dumps(_agent("clerk", display_name)))


def test_a_reader_past_the_trust_gets_the_loaded_set_at_once_and_the_edit_once_looked_at(tmp_path: Path) -> None:
    _write(tmp_path, "Clerk")
    store = ConfigStore([tmp_path], recheck_seconds=0.05)
    first = store.current()
    _write(tmp_path, "Head clerk")
    time.sleep(0.5)  # past the trust (at least 0.05 s, or 20 times a look)

    assert store.current() is first  # the look runs behind; this reader did not wait for it
    deadline = time.monotonic() + 10
    while store.current().agents["clerk"].display_name != "Head clerk":
        assert time.monotonic() < deadline, "the look behind never replaced the loaded configs"
        time.sleep(0.01)


async def test_fresh_waits_for_the_look_while_the_event_loop_goes_on(tmp_path: Path) -> None:
    _write(tmp_path, "Clerk")
    store = ConfigStore([tmp_path], recheck_seconds=0.05)
    store.current()
    _write(tmp_path, "Head clerk")
    await asyncio.sleep(0.5)  # past the trust
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    ticks = 0
    try:
        fresh = await store.fresh()
    finally:
        task.cancel()
    assert fresh.agents["clerk"].display_name == "Head clerk"
    assert ticks > 0  # the loop ran other tasks while the files were looked at

    _write(tmp_path, "Chief clerk")  # within the trust: only a refresh looks
    assert (await store.fresh(refresh=True)).agents["clerk"].display_name == "Chief clerk"
    _write(tmp_path, "Clerk of the works")
    assert store.current(refresh=True).agents["clerk"].display_name == "Clerk of the works"
