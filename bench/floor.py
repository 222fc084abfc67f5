"""The floor: one SQLite transaction per event on the same disk, the least any durable system pays.

Each event updates its agent's row (the event's JSON as the new state, a counter + 1) and
commits: one transaction, as little as durable per-event state can cost. WAL journal, and
``synchronous`` once as our engine's store sets it (NORMAL: a commit is durable against a process
crash; the WAL is fsynced at checkpoints, so a power cut may lose the last commits) and once FULL
(an fsync of the WAL per commit: durable against a power cut). Latency is the transaction alone.
"""

from __future__ import annotations

import json
import sqlite3
import tempfile
import time
from pathlib import Path
from typing import Any

from bench import job
from bench.measure import cpu_figure, target
from bench.stats import latency_figures

MODES = {"normal": "NORMAL", "full": "FULL"}


def _open(path: Path, synchronous: str, agents: list[str]) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("CREATE TABLE agents (id TEXT PRIMARY KEY, state TEXT NOT NULL, turns INTEGER NOT NULL)")
    conn.execute("BEGIN")
    conn.executemany("INSERT INTO agents VALUES (?, ?, 0)",
                     [(agent_id, json.dumps(job.initial_state(agent_id))) for agent_id in agents])
    conn.execute("COMMIT")
    return conn


def _transaction(conn: sqlite3.Connection, agent_id: str, body: str) -> None:
    conn.execute("BEGIN IMMEDIATE")
    conn.execute("UPDATE agents SET state = ?, turns = turns + 1 WHERE id = ?", (body, agent_id))
    conn.execute("COMMIT")


def run(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """Per agent count and mode: ``events`` transactions per repeat (after ``warmup``), events/s and p50/p99."""
    runs: list[dict[str, float]] = [{} for _ in range(repeat)]
    with tempfile.TemporaryDirectory(prefix="aos-bench-floor-", dir=state_dir) as folder:
        for count in params["agents"]:
            agents = job.agent_ids(count)
            for mode, synchronous in MODES.items():
                conn = _open(Path(folder) / f"floor-{count}-{mode}.sqlite", synchronous, agents)
                counter = 0
                for _ in range(params["warmup"]):
                    _transaction(conn, target(agents, counter), json.dumps(job.event("w", counter).data))
                    counter += 1
                for index in range(repeat):
                    bodies = [json.dumps(job.event("x", counter + n).data) for n in range(params["events"])]
                    latencies = []
                    started, cpu = time.perf_counter(), time.process_time()
                    for body in bodies:
                        before = time.perf_counter()
                        _transaction(conn, target(agents, counter), body)
                        latencies.append((time.perf_counter() - before) * 1000)
                        counter += 1
                    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
                    prefix = f"{mode}.agents_{count}."
                    runs[index][f"{prefix}events_per_second"] = round(len(bodies) / elapsed, 1)
                    runs[index].update(cpu_figure(prefix, cpu, len(bodies)))
                    runs[index].update(latency_figures(prefix, latencies))
                conn.close()
    return {"runs": runs, "details": {"synchronous": MODES, "journal_mode": "WAL"}}
