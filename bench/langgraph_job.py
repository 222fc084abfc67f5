"""The same job written idiomatically for LangGraph with its SQLite checkpointer (``bench`` extra).

One ``StateGraph`` for the agent type, a multi-step turn per event: ``receive`` (count the
turn) -> ``think`` (the offline provider, as our turns) -> ``remember`` (the bounded memory, our
code) -> ``emit`` (the output). A thread per agent (``thread_id`` = agent id), checkpoints in a
``SqliteSaver`` on a file on disk (WAL, which the saver sets). Each agent is registered before
timing with its initial state (``update_state``). Events are handled one after another
(``graph.invoke`` per event, the saver serializes writes anyway); the output time is when
``invoke`` returns, i.e. the emitted output is checkpointed.

Durability as run by the primary variant: ``durability="sync"`` (each step's checkpoint is written
before the next step starts, like our engine's episode commits) and ``PRAGMA synchronous=NORMAL``
(as our store). The ``defaults`` variant is LangGraph out of the box: ``durability="async"``
(checkpoints written while the next step runs; ``invoke`` still waits for them before returning)
and SQLite's default ``synchronous=FULL`` (an fsync per commit).
"""

from __future__ import annotations

import sqlite3
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from bench import instructions, job
from bench.measure import burst_figures, cpu_figure, one_at_a_time_figures, target
from bench.sqlite_count import COUNTED_EVENTS, CommitCounter


class TurnState(TypedDict, total=False):
    agent_id: str
    turns: int
    memory: dict[str, Any]
    event: dict[str, Any]
    reply: str
    output: dict[str, Any]


def _event(state: TurnState) -> job.Event:
    return job.Event(**state["event"])


def receive(state: TurnState) -> dict[str, Any]:
    return {"turns": state.get("turns", 0) + 1}


def think(state: TurnState) -> dict[str, Any]:
    return {"reply": job.think(state["agent_id"], _event(state))}


def remember(state: TurnState) -> dict[str, Any]:
    return {"memory": job.remember(state["memory"], _event(state), state["reply"])}  # type: ignore[arg-type]


def emit(state: TurnState) -> dict[str, Any]:
    return {"output": job.output(state["agent_id"], _event(state), state["reply"])}


def build(checkpointer: SqliteSaver) -> Any:
    """The agent type's graph: receive -> think -> remember -> emit."""
    graph = StateGraph(TurnState)
    for name, step in (("receive", receive), ("think", think), ("remember", remember), ("emit", emit)):
        graph.add_node(name, step)
    graph.add_edge(START, "receive")
    graph.add_edge("receive", "think")
    graph.add_edge("think", "remember")
    graph.add_edge("remember", "emit")
    graph.add_edge("emit", END)
    return graph.compile(checkpointer=checkpointer)


def _invoke(graph: Any, item: job.Event, durability: str | None) -> None:
    config = {"configurable": {"thread_id": item.agent_id}}
    extra = {"durability": durability} if durability else {}
    result = graph.invoke({"event": asdict(item)}, config, **extra)
    if result["output"]["causation_id"] != item.id:
        raise RuntimeError(f"LangGraph emitted {result['output']} for event {item.id}")


def run(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """Per agent count: a burst of ``events`` and ``sequential`` events one at a time, per repeat."""
    durability, synchronous = params.get("durability"), params.get("synchronous")
    runs: list[dict[str, float]] = [{} for _ in range(repeat)]
    details: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="aos-bench-langgraph-", dir=state_dir) as folder:
        for count in params["agents"]:
            agents = job.agent_ids(count)
            conn = sqlite3.connect(Path(folder) / f"checkpoints-{count}.sqlite", check_same_thread=False)
            if synchronous:
                conn.execute(f"PRAGMA synchronous={synchronous}")
            details["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
                conn.execute("PRAGMA synchronous").fetchone()[0]]
            graph = build(SqliteSaver(conn))
            for agent_id in agents:
                graph.update_state({"configurable": {"thread_id": agent_id}}, job.initial_state(agent_id))
            counter = 0
            for _ in range(params["warmup"]):
                _invoke(graph, job.event(target(agents, counter), counter, "w"), durability)
                counter += 1
            for index in range(repeat):
                items = [job.event(target(agents, counter + n), counter + n, f"b{index}") for n in range(params["events"])]
                counter += len(items)
                sent, done = {}, {}
                with instructions.counted():
                    started, cpu = time.perf_counter(), time.process_time()
                    for item in items:  # all sent at once: each waits for the ones before it
                        sent[item.id] = started
                    for item in items:
                        _invoke(graph, item, durability)
                        done[item.id] = time.perf_counter()
                    cpu = time.process_time() - cpu
                latencies = []
                for _ in range(params["sequential"]):
                    item = job.event(target(agents, counter), counter, f"s{index}")
                    counter += 1
                    before = time.perf_counter()
                    _invoke(graph, item, durability)
                    latencies.append((time.perf_counter() - before) * 1000)
                prefix = f"agents_{count}."
                runs[index].update(burst_figures(prefix, sent, done))
                runs[index].update(cpu_figure(prefix, cpu, len(items)))
                runs[index].update(one_at_a_time_figures(prefix, latencies))
            if params.get("count_commits", True):
                counted, commits = min(COUNTED_EVENTS, params["events"]), CommitCounter()
                commits.watch(conn)
                with commits.counting():
                    for n in range(counted):
                        _invoke(graph, job.event(target(agents, counter + n), counter + n, "c"), durability)
                details[f"commits_per_event_agents_{count}"] = commits.per_event(counted)
            details["journal_mode"] = conn.execute("PRAGMA journal_mode").fetchone()[0]
            details[f"checkpoints_rows_agents_{count}"] = conn.execute("SELECT COUNT(*) FROM checkpoints").fetchone()[0]
            details[f"bytes_agents_{count}"] = sum(p.stat().st_size for p in Path(folder).glob(f"checkpoints-{count}.sqlite*"))
            conn.close()
    details["durability"] = durability or "async (LangGraph's default)"
    return {"runs": runs, "details": details}
