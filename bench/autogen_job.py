"""The same job written for AutoGen Core's single-threaded runtime (``bench`` extra).

A ``RoutedAgent`` per agent (agent type ``bench_agent``, key = agent id, created by the runtime
on its first message), subscribed to topic type ``events`` with the topic source as the agent key.
Its message handler thinks (the offline provider, as our turns), updates the bounded memory (our
code), saves the agent's state to SQLite in one transaction per event and publishes the output on
topic type ``outputs``, where one collector agent notes when each output arrives (the output time).
The state table is seeded with every agent's initial state before timing; an agent loads its row
on its first message. SQLite: WAL and ``synchronous=NORMAL``, as our store.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from autogen_core import (
    MessageContext,
    RoutedAgent,
    SingleThreadedAgentRuntime,
    TopicId,
    TypeSubscription,
    message_handler,
)

from bench import instructions, job
from bench.measure import burst_figures, cpu_figure, one_at_a_time_figures, target
from bench.sqlite_count import COUNTED_EVENTS, CommitCounter


@dataclass(frozen=True)
class Output:
    event_id: str
    body: dict[str, Any]


class StateStore:
    """Agent states as JSON rows; ``save`` is one transaction."""

    def __init__(self, path: Path, agents: list[str]) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=NORMAL")
        self.conn.execute("CREATE TABLE agents (id TEXT PRIMARY KEY, state TEXT NOT NULL)")
        self.conn.execute("BEGIN")
        self.conn.executemany("INSERT INTO agents VALUES (?, ?)",
                              [(agent_id, json.dumps(job.initial_state(agent_id))) for agent_id in agents])
        self.conn.execute("COMMIT")

    def load(self, agent_id: str) -> dict[str, Any]:
        row = self.conn.execute("SELECT state FROM agents WHERE id = ?", (agent_id,)).fetchone()
        if row is None:
            raise LookupError(f"agent {agent_id} is not registered")
        return json.loads(row[0])

    def save(self, agent_id: str, state: dict[str, Any]) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("UPDATE agents SET state = ? WHERE id = ?", (json.dumps(state), agent_id))
        self.conn.execute("COMMIT")


class BenchAgent(RoutedAgent):
    def __init__(self, store: StateStore) -> None:
        super().__init__("bench agent")
        self._store = store
        self._state: dict[str, Any] | None = None

    @message_handler
    async def on_event(self, message: job.Event, ctx: MessageContext) -> None:
        if self._state is None:
            self._state = self._store.load(self.id.key)
        reply = job.think(self.id.key, message)
        state = {**self._state, "turns": self._state["turns"] + 1,
                 "memory": job.remember(self._state["memory"], message, reply)}
        self._store.save(self.id.key, state)
        self._state = state
        await self.publish_message(Output(message.id, job.output(self.id.key, message, reply)),
                                   TopicId("outputs", source="bench"))


class Collector(RoutedAgent):
    """Notes the time each output arrives, and wakes whoever waits for a number of them."""

    def __init__(self, done: dict[str, float], arrived: asyncio.Event) -> None:
        super().__init__("output collector")
        self._done = done
        self._arrived = arrived

    @message_handler
    async def on_output(self, message: Output, ctx: MessageContext) -> None:
        self._done[message.event_id] = time.perf_counter()
        self._arrived.set()


async def _wait_for(done: dict[str, float], arrived: asyncio.Event, ids: list[str], timeout: float = 600) -> None:
    deadline = time.monotonic() + timeout
    while any(key not in done for key in ids):
        arrived.clear()
        if all(key in done for key in ids):
            break
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"AutoGen produced {sum(k in done for k in ids)} of {len(ids)} outputs")
        try:
            await asyncio.wait_for(arrived.wait(), remaining)
        except TimeoutError:
            pass


async def _one_count(count: int, params: dict[str, Any], repeat: int, folder: Path,
                     runs: list[dict[str, float]], details: dict[str, Any]) -> None:
    agents = job.agent_ids(count)
    store = StateStore(folder / f"autogen-{count}.sqlite", agents)
    done: dict[str, float] = {}
    arrived = asyncio.Event()
    runtime = SingleThreadedAgentRuntime()
    await BenchAgent.register(runtime, "bench_agent", lambda: BenchAgent(store))
    await Collector.register(runtime, "collector", lambda: Collector(done, arrived))
    await runtime.add_subscription(TypeSubscription(topic_type="events", agent_type="bench_agent"))
    await runtime.add_subscription(TypeSubscription(topic_type="outputs", agent_type="collector"))
    runtime.start()
    try:
        async def publish(item: job.Event) -> None:
            await runtime.publish_message(item, TopicId("events", source=item.agent_id))

        counter = 0
        warm = []
        for _ in range(params["warmup"]):
            warm.append(job.event(target(agents, counter), counter, "w"))
            counter += 1
            await publish(warm[-1])
        await _wait_for(done, arrived, [item.id for item in warm])
        for index in range(repeat):
            items = [job.event(target(agents, counter + n), counter + n, f"b{index}") for n in range(params["events"])]
            counter += len(items)
            sent = {}
            with instructions.counted():
                cpu = time.process_time()
                for item in items:
                    sent[item.id] = time.perf_counter()
                    await publish(item)
                await _wait_for(done, arrived, list(sent))
                cpu = time.process_time() - cpu
            latencies = []
            for _ in range(params["sequential"]):
                item = job.event(target(agents, counter), counter, f"s{index}")
                counter += 1
                before = time.perf_counter()
                await publish(item)
                await _wait_for(done, arrived, [item.id])
                latencies.append((done[item.id] - before) * 1000)
            prefix = f"agents_{count}."
            runs[index].update(burst_figures(prefix, sent, done))
            runs[index].update(cpu_figure(prefix, cpu, len(items)))
            runs[index].update(one_at_a_time_figures(prefix, latencies))
        if params.get("count_commits", True):
            counted, commits = min(COUNTED_EVENTS, params["events"]), CommitCounter()
            commits.watch(store.conn)
            with commits.counting():
                items = [job.event(target(agents, counter + n), counter + n, "c") for n in range(counted)]
                for item in items:
                    await publish(item)
                await _wait_for(done, arrived, [item.id for item in items])
            details[f"commits_per_event_agents_{count}"] = commits.per_event(counted)
    finally:
        await runtime.stop_when_idle()
        await runtime.close()
        store.conn.close()


def run(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """Per agent count: a burst of ``events`` and ``sequential`` events one at a time, per repeat."""
    runs: list[dict[str, float]] = [{} for _ in range(repeat)]
    details: dict[str, Any] = {"journal_mode": "WAL", "synchronous": "NORMAL", "runtime": "SingleThreadedAgentRuntime"}
    with tempfile.TemporaryDirectory(prefix="aos-bench-autogen-", dir=state_dir) as folder:
        for count in params["agents"]:
            asyncio.run(_one_count(count, params, repeat, Path(folder), runs, details))
    return {"runs": runs, "details": details}
