"""Benchmark: agent turns on the embedded platform — kernel overhead, entity state size, sleeping agents.

Three measurements (issue 4), each with a named alternative measured in the same run:

1. **Turn overhead.** A ``Platform`` (the real ``function_app.py``) on a temporary state folder
   with one agent (no tool grants, so no MCP subprocesses; offline inference provider). Events go
   to it through the bus (``agent-events``, ``to`` set), so each turn is the whole path: wake
   trigger, entity lock, purpose check, model call (offline), archive, publish, finish.

   * *burst*: ``--turns`` events sent at once. An agent runs its turns one at a time (the entity
     is its lock and queue), so turns/s here is one agent's sequential throughput. Per turn, from
     the archived record and the orchestration's history: ``started``->``finished`` (the part of
     the orchestration between reading the state and the model's answer), lock->done (from the
     entity granting the turn to the orchestration completing: what one turn costs the agent) and
     send->done (includes waiting behind the agent's earlier turns).
   * *one at a time*: ``--latency-turns`` events, each sent after the previous turn completed:
     send->done (bus, wake, orchestration) and created->done (the orchestration alone).

   Alternative: the same numbers of no-op Durable orchestrations (one activity each) on the same
   engine with state on a SQLite file, started directly: the ratios say what an agent turn costs
   relative to a minimal durable workflow.

2. **Entity state size.** The real entity code (``realm_of_agents.entity.agent_entity``) through
   the Durable SDK's entity handler with batch JSON, as the host drives it: per turn ``enqueue``
   (signal from wake), ``begin``, ``context`` and ``finish`` of a realistic turn (reply ~200
   characters, a fact every 50 turns, goal touches, progress every 100 turns, some declined and
   failed turns), each its own batch with the state carried between batches as JSON. State bytes at
   10, 1,000, 10,000 and 100,000 turns (``--state-turns``) against the memory budget, and the mean
   time per turn (its four batches) just before each mark. Alternative: a naive agent that keeps
   every turn digest in its state (an unbounded list): its bytes and one JSON round trip of it
   (what every entity operation would pay to load and save it) at the same marks.

3. **Sleeping agents.** Process RSS (``VmRSS``) of a running Platform before and after
   ``--agents`` agents are registered, the SQLite state file size (WAL checkpointed), the time to
   register them, and one agent's turn latency (send->done) before and after. Each way of
   registering runs in its own fresh process, so memory freed by the other parts cannot hide
   growth (``--agents-mode``):

   * *direct* (the entities alone): signal each agent entity's ``configure`` operation through the
     Durable client (``client.signal_entity``), as config sync's command orchestrations do. Only
     the agent woken afterwards is declared in the config folder, because routing delivers an
     event only to an agent declared in config. This is the cost of ten thousand sleeping agents
     as such: entity rows, nothing resident per agent.
   * *declared* (the whole registration path): write one JSON config per agent into the config
     folder, then what the platform does when it sees the change: redeclare the topology (one
     subscription rule per agent; each subscribes to its own ``<id>.*`` events so that no
     broadcast wakes them all) and sync (a command orchestration and a registry row per agent).
     What stays resident per agent: its config as compact JSON, its routing entry and its Service
     Bus rule. The registration itself is a burst (ten thousand configure commands pending at
     once), and the allocator keeps part of that peak.
   * *restarted* (the steady state): after *declared*, a new process starts a Platform over the
     same config folder and state (its start-up sync finds nothing to do) and takes the same
     warm-up and sample turns; its RSS against *declared*'s "before" (a Platform with one agent,
     same turns) is what ten thousand declared, registered, sleeping agents cost a running process.

Figures only, never assertions on time. Prints a readable summary, then one JSON object.

    python -m bench.agent_turns [--turns 300] [--latency-turns 100] [--state-turns 100000] [--agents 10000]
    python -m bench.agent_turns --quick      # small counts, under a minute
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import statistics
import sys
import tempfile
import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import azure.durable_functions as df  # noqa: E402

from kernel.engine import EmbeddedHost, heap  # noqa: E402
from kernel.engine.clock import parse_timestamp  # noqa: E402
from kernel.messages import Envelope  # noqa: E402
from kernel.ports import OutboundMessage  # noqa: E402
from kernel.topology import AGENT_EVENTS  # noqa: E402
from realm_of_agents.entity import ENTITY_NAME, agent_entity  # noqa: E402
from realm_of_agents.ids import turn_instance_id  # noqa: E402
from realm_of_agents.memory import digest, size_of  # noqa: E402

AGENT_ID = "bench-agent"
EVENT_TYPE = "invoice.received"
STATE_MARKS = (10, 1_000, 10_000, 100_000)


def agent_config(agent_id: str = AGENT_ID, *, own_events: bool = False) -> dict[str, Any]:
    """A finance agent with two goals, a subscription and the default memory budget; no tools.

    ``own_events`` subscribes it to ``<agent id>.*`` instead of ``invoice.*`` (the sleeping agents:
    a broadcast invoice must not wake ten thousand of them, and each still adds a topology rule).
    """
    return {
        "kind": "agent",
        "id": agent_id,
        "display_name": "Benchmark agent",
        "purpose": "Review invoices and expenses against the budget, and flag financial risks early.",
        "scope": {"in_scope": ["invoices", "expenses and budgets"], "out_of_scope": ["hiring"]},
        "goals": [
            {"id": "budget-adherence", "description": "Keep every invoice within the approved budget.", "priority": 1},
            {"id": "risk-review", "description": "Flag financial risks in expenses within a day.", "priority": 2},
        ],
        "subscriptions": [{"event_types": [f"{agent_id}.*" if own_events else "invoice.*"]}],
    }


def _write_configs(folder: Path, agent_ids: list[str], *, own_events: bool = False) -> Path:
    """One JSON config file per agent, written as a user's tool would write them. The paths are plain
    strings: ``folder / name`` would make pathlib intern every file name for the life of the process
    (1.8 MiB for ten thousand), memory the sleeping-agents scenario would charge to the platform."""
    folder.mkdir(parents=True, exist_ok=True)
    where = str(folder)
    for agent_id in agent_ids:
        with open(os.path.join(where, f"{agent_id}.json"), "w", encoding="utf-8") as file:
            file.write(json.dumps(agent_config(agent_id, own_events=own_events)))
    return folder


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 2), "p99": round(_percentile(values, 0.99), 2),
            "mean": round(statistics.fmean(values), 2)}


def _ms(start: str | datetime, end: str | datetime) -> float:
    start = parse_timestamp(start) if isinstance(start, str) else start
    end = parse_timestamp(end) if isinstance(end, str) else end
    return (end - start).total_seconds() * 1000


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status (Linux only)")


# -- 1. turn overhead -----------------------------------------------------------------------------

async def _send_event(host: Any, agent_id: str, n: int) -> tuple[str, str, datetime]:
    """One event addressed to ``agent_id`` on the agent-events topic: (agent id, turn id, send time)."""
    envelope = Envelope(id=uuid.uuid4().hex, type=EVENT_TYPE, source="bench", to=agent_id,
                        data={"vendor": "Contoso", "amount": 1000 + n, "note": f"invoice {n} for budget review"})
    message = OutboundMessage.from_envelope(envelope)
    await host.send(AGENT_EVENTS, message.body, message_id=message.message_id, subject=message.subject, to=message.to,
                    content_type=message.content_type, properties=message.application_properties)
    return agent_id, turn_instance_id(agent_id, envelope.id), envelope.time


def _granted_at(host: Any, turn_id: str) -> str | None:
    """When the agent entity granted the turn: the ``begin`` answer that said ``start``."""
    for raw in host.store.load_history(turn_id):
        event = json.loads(raw)
        if event.get("EventType") != 15 or not event.get("Input"):
            continue
        try:
            result = json.loads(json.loads(event["Input"]).get("result") or "null")
        except (TypeError, ValueError):
            continue
        if isinstance(result, dict) and result.get("decision") == "start":
            return event["Timestamp"]
    return None


async def _turn_figures(platform: Any, sent: list[tuple[str, str, datetime]]) -> dict[str, list[float]]:
    host = platform.host
    figures: dict[str, list[float]] = {"inside": [], "lock_to_done": [], "send_to_done": [], "created_to_done": []}
    outcomes: dict[str, int] = {}
    for agent_id, turn_id, sent_at in sent:
        row = host.store.load_instance(turn_id)
        if row is None or row.status != "Completed":
            raise RuntimeError(f"turn {turn_id} did not complete: {row and row.status} {row and row.output}")
        status, record = await platform.api("GET", f"agents/{agent_id}/turns/{turn_id}")
        if status != 200 or "started" not in record:
            raise RuntimeError(f"turn {turn_id} is not archived: {status} {record}")
        outcomes[record["outcome"]] = outcomes.get(record["outcome"], 0) + 1
        figures["inside"].append(_ms(record["started"], record["finished"]))
        granted = _granted_at(host, turn_id)
        if granted is not None:
            figures["lock_to_done"].append(_ms(granted, row.updated_at))
        figures["send_to_done"].append(_ms(sent_at, row.updated_at))
        figures["created_to_done"].append(_ms(row.created_at, row.updated_at))
    if set(outcomes) != {"replied"}:
        raise RuntimeError(f"expected every turn to be answered, got {outcomes}")
    return figures


async def turn_overhead(turns: int, latency_turns: int, burst_agents: int = 1, warmup: int = 10) -> dict[str, Any]:
    from kernel.platform import Platform

    agents = [AGENT_ID] + [f"{AGENT_ID}-{n}" for n in range(1, burst_agents)]
    with tempfile.TemporaryDirectory(prefix="aos-bench-") as folder:
        configs = _write_configs(Path(folder) / "configs", agents)
        async with Platform(state_dir=Path(folder) / "state", port=0, config_paths=str(configs),
                            extra_settings={"AOS_INFERENCE_ENDPOINT": ""}) as platform:
            await platform.wait_idle(60)
            for n in range(warmup):
                await _send_event(platform.host, AGENT_ID, -1 - n)
            await platform.wait_idle(120)

            started = time.perf_counter()
            burst = [await _send_event(platform.host, agents[n % len(agents)], n) for n in range(turns)]
            await platform.wait_idle(max(120, turns))
            burst_seconds = time.perf_counter() - started
            burst_figures = await _turn_figures(platform, burst)

            single = []
            for n in range(latency_turns):
                single.append(await _send_event(platform.host, AGENT_ID, turns + n))
                await platform.wait_idle(60)
            single_figures = await _turn_figures(platform, single)
    return {
        "burst_agents": len(agents),
        "agent_turns_per_second": round(turns / burst_seconds, 1),
        "burst_seconds": round(burst_seconds, 3),
        "burst_ms": {name: _spread(values) for name, values in burst_figures.items() if values},
        "one_at_a_time_ms": {name: _spread(single_figures[name]) for name in ("send_to_done", "created_to_done")},
    }


NOOP_APP = '''
import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def noop_workflow(context: df.DurableOrchestrationContext):
    result = yield context.call_activity("noop", context.get_input())
    return result


@app.activity_trigger(input_name="value")
async def noop(value: int) -> int:
    return value
'''


async def noop_baseline(turns: int, latency_turns: int, warmup: int = 10) -> dict[str, Any]:
    """The named alternative: minimal durable workflows (one activity) on the same engine and store."""
    with tempfile.TemporaryDirectory(prefix="aos-bench-noop-") as folder:
        app_file = Path(folder) / "app" / "function_app.py"
        app_file.parent.mkdir()
        app_file.write_text(textwrap.dedent(NOOP_APP), encoding="utf-8")
        (app_file.parent / "host.json").write_text(json.dumps({"version": "2.0"}), encoding="utf-8")
        async with EmbeddedHost(app_file, state_path=Path(folder) / "engine.sqlite") as host:
            engine = host.engine
            for n in range(warmup):
                engine.start_instance("noop_workflow", f"w{n}", json.dumps(n))
            await host.wait_idle(60)
            started = time.perf_counter()
            ids = [engine.start_instance("noop_workflow", f"b{n}", json.dumps(n)) for n in range(turns)]
            await host.wait_idle(max(120, turns))
            burst_seconds = time.perf_counter() - started
            burst = []
            for instance_id in ids:
                row = host.store.load_instance(instance_id)
                if row is None or row.status != "Completed":
                    raise RuntimeError(f"no-op workflow {instance_id} did not complete: {row and row.status}")
                burst.append(_ms(row.created_at, row.updated_at))
            single = []
            for n in range(latency_turns):
                instance_id = engine.start_instance("noop_workflow", f"s{n}", json.dumps(n))
                await host.wait_idle(60)
                row = host.store.load_instance(instance_id)
                assert row is not None and row.status == "Completed", (instance_id, row and row.status)
                single.append(_ms(row.created_at, row.updated_at))
    return {
        "workflows_per_second": round(turns / burst_seconds, 1),
        "burst_seconds": round(burst_seconds, 3),
        "burst_ms": {"created_to_done": _spread(burst)},
        "one_at_a_time_ms": {"created_to_done": _spread(single)},
    }


# -- 2. entity state size -------------------------------------------------------------------------

class _EntityDriver:
    """The agent entity through the SDK's handler, one batch per call, state carried as JSON."""

    def __init__(self, key: str) -> None:
        self.handler = df.Entity.create(agent_entity)
        self.key = key
        self.state: str | None = None
        self.exists = False

    def run(self, name: str, payload: dict[str, Any]) -> Any:
        batch = [{"name": name, "input": json.dumps(json.dumps(payload))}]
        out = json.loads(self.handler(json.dumps({"self": {"name": ENTITY_NAME, "key": self.key},
                                                  "exists": self.exists, "state": self.state, "batch": batch})))
        self.exists, self.state = out["entityExists"], out["entityState"]
        (result,) = out["results"]
        if result["isError"]:
            raise RuntimeError(f"entity operation {name} failed: {result['result']}")
        return json.loads(result["result"])


def _reply(n: int) -> str:
    """A ~200-character reply, varied per turn."""
    return (f"Invoice {n} from vendor {['Contoso', 'Fabrikam', 'Northwind', 'Litware'][n % 4]} for "
            f"{1000 + (n * 37) % 9000} EUR checked against the Q{n % 4 + 1} budget: within the approved limit, "
            f"no risk flagged. Filed for payment on the next run.")[:220]


def entity_state(turns: int, marks: tuple[int, ...] = STATE_MARKS) -> dict[str, Any]:
    marks = tuple(m for m in marks if m <= turns) + (() if turns in marks else (turns,))
    entity = _EntityDriver(AGENT_ID)
    config = agent_config()
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    entity.run("configure", {"config": config, "version": "v1", "at": start.isoformat()})
    goals = [goal["id"] for goal in config["goals"]]
    naive: list[dict[str, Any]] = []
    rows = []
    window: list[float] = []
    for n in range(1, turns + 1):
        event_id = f"evt-{n}"
        turn_id = turn_instance_id(AGENT_ID, event_id)
        at = (start + timedelta(minutes=n)).isoformat()
        outcome = "failed" if n % 97 == 0 else "declined" if n % 20 == 0 else "replied"
        text = _reply(n) if outcome == "replied" else ("model call failed: timeout" if outcome == "failed"
                                                       else "Declined: the event is outside the agent's purpose.")
        goal_updates: dict[str, dict[str, Any]] = {}
        if outcome == "replied":
            goal_updates[goals[n % 2]] = {"action": "touch", "turn_id": turn_id}
        if n % 100 == 0:
            goal_updates[goals[0]] = {"action": "progress", "progress": (n // 100) % 101, "turn_id": turn_id}
        turn = {"digest": digest(turn_id, at, EVENT_TYPE, outcome, text),
                "facts": [f"Vendor {n % 300} payment terms are net {30 + n % 31} days."] if n % 50 == 0 else [],
                "tool_calls": n % 3, "tokens_in": 900 + n % 200, "tokens_out": 120 + n % 60,
                "goal_updates": goal_updates}
        began = time.perf_counter()
        entity.run("enqueue", {"event_id": event_id, "seq": n})
        decision = entity.run("begin", {"event_id": event_id, "seq": n})
        if decision["decision"] != "start":
            raise RuntimeError(f"turn {n}: begin answered {decision}")
        entity.run("context", {"for": turn_id})
        entity.run("finish", {"event_id": event_id, "turn": turn, "at": at})
        window.append(time.perf_counter() - began)
        del window[:-1000]
        naive.append(turn["digest"])
        if n in marks:
            state = json.loads(entity.state or "null")
            naive_json = json.dumps(naive, separators=(",", ":"))
            round_trip = time.perf_counter()
            json.loads(naive_json)
            json.dumps(json.loads(naive_json), separators=(",", ":"))
            round_trip = time.perf_counter() - round_trip
            rows.append({"turns": n, "state_bytes": size_of(state), "window_turns": len(state["memory"]["window"]),
                         "summary_lines": len(state["memory"]["summary"]), "facts": len(state["memory"]["facts"]),
                         "us_per_turn": round(statistics.fmean(window) * 1e6, 1), "turns_timed": len(window),
                         "naive_bytes": len(naive_json.encode("utf-8")),
                         "naive_round_trip_ms": round(round_trip * 1000, 3)})
    budget = state["config"]["memory"]
    previous = rows[-2] if len(rows) > 1 else rows[-1]
    return {"memory_budget": budget, "marks": rows,
            "max_state_bytes_seen": max(row["state_bytes"] for row in rows),
            "growth_last_two_marks": round(rows[-1]["state_bytes"] / previous["state_bytes"], 3),
            "time_per_turn_last_two_marks": round(rows[-1]["us_per_turn"] / previous["us_per_turn"], 2),
            "naive_vs_entity_bytes_at_last_mark": round(rows[-1]["naive_bytes"] / rows[-1]["state_bytes"], 1)}


# -- 3. sleeping agents ---------------------------------------------------------------------------

async def sleeping_agents(count: int, mode: str, concurrency: int = 64, sample_turns: int = 10,
                         keep: Path | None = None) -> dict[str, Any]:
    """RSS, SQLite size and one agent's turn latency before and after registering ``count`` agents.

    ``direct``: signal ``configure`` to each agent entity through the Durable client; only the
    agent woken afterwards is declared in config (routing delivers only to declared agents).
    ``declared``: write one JSON config per agent into the config folder, then do what the
    platform does when it sees the change: redeclare the topology (a rule per agent) and sync.
    ``keep``: use this folder for configs and state and leave them there (for ``restarted``).
    """
    from kernel.platform import Platform

    ids = [f"sleeper-{n:06d}" for n in range(count)]
    woken = ids[count // 2]
    with contextlib.ExitStack() as stack:
        folder = str(keep) if keep is not None else stack.enter_context(
            tempfile.TemporaryDirectory(prefix="aos-bench-agents-"))
        configs = _write_configs(Path(folder) / "configs", [woken])
        state_dir = Path(folder) / "state"
        async with Platform(state_dir=state_dir, port=0, config_paths=str(configs), watch_interval=3600,
                            extra_settings={"AOS_INFERENCE_ENDPOINT": ""}) as platform:
            host = platform.host
            await platform.wait_idle(60)
            for n in range(3):  # every code path a turn uses, loaded before the first reading
                await _one_turn(platform, woken, -1 - n)
            before_turns = [await _one_turn(platform, woken, n) for n in range(sample_turns)]
            gc.collect()
            rss_before, db_before = _rss_kib(), _db_bytes(host)
            phases: dict[str, float] = {}
            started = time.perf_counter()
            if mode == "direct":
                await _configure_directly(host, ids, concurrency, started)
                phases["signal_seconds"] = time.perf_counter() - started
            else:
                others = [agent_id for agent_id in ids if agent_id != woken]
                step = max(1, len(others) // 10)
                for first in range(0, len(others), step):
                    _write_configs(configs, others[first:first + step], own_events=True)
                    _progress(f"wrote {min(first + step, len(others)) + 1}/{count} config files", started)
                phases["write_files_seconds"] = time.perf_counter() - started
                mark = time.perf_counter()
                platform.redeclare_topology()
                phases["topology_seconds"] = time.perf_counter() - mark
                _progress("topology redeclared", started)
                mark = time.perf_counter()
                configured = len((await platform.sync())["configured"])  # the report is not kept: the platform does not
                phases["sync_seconds"] = time.perf_counter() - mark
                _progress(f"sync asked to configure {configured} agents", started)
            mark = time.perf_counter()
            await platform.wait_idle(max(600, count / 5))
            phases["settle_seconds"] = time.perf_counter() - mark
            register_seconds = time.perf_counter() - started
            _progress(f"{count} agents registered", started)

            registered = _registered_count(host)
            sample = json.loads(host.engine.read_entity(ENTITY_NAME, ids[-1]) or "null")
            if registered < count or not sample or sample.get("status") != "sleeping":
                raise RuntimeError(f"expected {count} sleeping agents, found {registered} "
                                   f"({sample and sample.get('status')})")
            # The process at rest: an engine that ran a burst gives memory back once it has been quiet
            # for a moment (kernel/engine/heap.py); wait that moment, as a sleeping platform would.
            await asyncio.sleep(heap.RELEASE_AFTER_QUIET_SECONDS + 0.5)
            releases = host.engine.memory_releases
            gc.collect()
            rss_after, db_after = _rss_kib(), _db_bytes(host)
            after_turns = [await _one_turn(platform, woken, 1000 + n) for n in range(sample_turns)]
            status, view = await platform.api("GET", f"agents/{woken}")
            if status != 200 or view["counters"]["turns"] != 2 * sample_turns + 3:
                raise RuntimeError(f"the woken agent did not take its turns: {status} {view}")
            gc.collect()
            rss_after_turns = _rss_kib()
    delta = rss_after - rss_before
    return {
        "mode": mode,
        "agents": count,
        "rss_before_mib": round(rss_before / 1024, 1),
        "rss_after_mib": round(rss_after / 1024, 1),
        "rss_delta_mib": round(delta / 1024, 1),
        "rss_per_agent_bytes": round(delta * 1024 / count),
        # after the woken agent's sample turns, which refill the SQLite page cache up to its bound
        "rss_delta_after_turns_mib": round((rss_after_turns - rss_before) / 1024, 1),
        "memory_releases": releases,
        "sqlite_bytes_before": db_before,
        "sqlite_bytes_after": db_after,
        "sqlite_bytes_per_agent": round((db_after - db_before) / count),
        "entity_state_bytes_one_agent": size_of(sample),
        "register_seconds": round(register_seconds, 2),
        "registered_per_second": round(count / register_seconds, 1),
        **{name: round(value, 2) for name, value in phases.items()},
        "woken_agent": woken,
        "turn_send_to_done_ms_before": _spread(before_turns),
        "turn_send_to_done_ms_after": _spread(after_turns),
    }


async def restarted_agents(folder: Path, count: int, sample_turns: int = 10) -> dict[str, Any]:
    """A new Platform over ``folder`` (left by ``sleeping_agents(..., keep=folder)``): RSS after its
    start (whose sync finds every agent registered) and the same warm-up and sample turns."""
    from kernel.platform import Platform

    woken = f"sleeper-{count // 2:06d}"
    started = time.perf_counter()
    async with Platform(state_dir=folder / "state", port=0, config_paths=str(folder / "configs"), watch_interval=3600,
                        extra_settings={"AOS_INFERENCE_ENDPOINT": ""}) as platform:
        await platform.wait_idle(600)
        start_seconds = time.perf_counter() - started
        for n in range(3):
            await _one_turn(platform, woken, 2000 - 1 - n)
        turns = [await _one_turn(platform, woken, 2000 + n) for n in range(sample_turns)]
        registered = _registered_count(platform.host)
        gc.collect()
        rss = _rss_kib()
        reload = await _config_reload(platform, folder / "configs", woken)
    if registered < count:
        raise RuntimeError(f"expected {count} registered agents after the restart, found {registered}")
    return {"mode": "restarted", "agents": count, "rss_mib": round(rss / 1024, 1),
            "start_seconds": round(start_seconds, 2), "turn_send_to_done_ms": _spread(turns), **reload}


async def _config_reload(platform: Any, folder: Path, agent_id: str, edits: int = 3) -> dict[str, Any]:
    """One agent's file edited among all the declared ones: how long the platform's config store
    takes to give the new configs (it reads only the changed file), against a full load of the
    folder (what every reload cost before session 19), in the same process; then the rest of what
    the local platform's watcher does on a change (redeclare the bus rules, sync the agents), all
    of it on the event loop. Then the watcher's own step applies further edits, with the look,
    the reload and the topology's build on worker threads: the event loop's longest pause then,
    against the whole work above, is what a turn running beside an edit waits (round 16)."""
    from kernel.config.loader import load_configs
    from kernel.config.store import default_store

    path = os.path.join(str(folder), f"{agent_id}.json")
    reloads, full_loads, applied = [], [], []
    for n in range(edits):
        with open(path, "w", encoding="utf-8") as file:
            file.write(json.dumps({**agent_config(agent_id, own_events=True), "display_name": f"Edited {n}"}))
        started = time.perf_counter()
        configs = default_store().current(refresh=True)  # the store the running platform reads
        reloads.append((time.perf_counter() - started) * 1000)
        platform.redeclare_topology(configs)
        report = await platform.sync(refresh=False)
        applied.append((time.perf_counter() - started) * 1000)
        if configs.agents[agent_id].display_name != f"Edited {n}" or len(report["configured"]) != 1:
            raise RuntimeError(f"the reload did not see edit {n} of {agent_id}: {report}")
        started = time.perf_counter()
        full = load_configs([folder])
        full_loads.append((time.perf_counter() - started) * 1000)
        if full.agents[agent_id].display_name != f"Edited {n}" or len(full.agents) != len(configs.agents):
            raise RuntimeError("a full load of the folder does not match the reload")
        del full
        await platform.wait_idle(60)
    watched, stalls = [], []
    for n in range(edits):  # as the watcher applies an edit: the look and the build on worker threads
        with open(path, "w", encoding="utf-8") as file:
            file.write(json.dumps({**agent_config(agent_id, own_events=True), "display_name": f"Watched {n}"}))
        async with _loop_stalls() as longest:
            started = time.perf_counter()
            report = await platform.apply_config_changes(refresh=True)
            watched.append((time.perf_counter() - started) * 1000)
        stalls.append(longest[0])
        if report is None or len(report["configured"]) != 1:
            raise RuntimeError(f"the watcher's step did not apply edit {n} of {agent_id}: {report}")
        await platform.wait_idle(60)
    return {"config_reload_ms": _spread(reloads), "config_full_load_ms": _spread(full_loads),
            "config_edit_applied_ms": _spread(applied), "config_watcher_ms": _spread(watched),
            "config_watcher_loop_stall_ms": _spread(stalls)}


@contextlib.asynccontextmanager
async def _loop_stalls(step: float = 0.002) -> Any:
    """The event loop's longest pause while the block runs, in ms (``longest[0]`` after it): a task
    that sleeps ``step`` and measures how late it wakes, which is how long a turn would have waited."""
    loop = asyncio.get_running_loop()
    longest = [0.0]

    async def probe() -> None:
        while True:
            before = loop.time()
            await asyncio.sleep(step)
            longest[0] = max(longest[0], (loop.time() - before - step) * 1000)

    task = asyncio.create_task(probe())
    await asyncio.sleep(0)
    try:
        yield longest
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _configure_directly(host: Any, ids: list[str], concurrency: int, started: float) -> None:
    client = host.client
    at = datetime.now(timezone.utc).isoformat()
    limit = asyncio.Semaphore(concurrency)

    async def configure(agent_id: str) -> None:
        async with limit:
            await client.signal_entity(df.EntityId(ENTITY_NAME, agent_id), "configure",
                                       {"config": agent_config(agent_id, own_events=True), "version": "v1", "at": at})

    step = max(1, len(ids) // 10)
    for first in range(0, len(ids), step):
        await asyncio.gather(*(configure(agent_id) for agent_id in ids[first:first + step]))
        _progress(f"signalled configure to {min(first + step, len(ids))}/{len(ids)} agents", started)


async def _one_turn(platform: Any, agent_id: str, n: int) -> float:
    """Send one event, wait for its turn; send->done in ms."""
    _, turn_id, sent_at = await _send_event(platform.host, agent_id, n)
    await platform.wait_idle(60)
    row = platform.host.store.load_instance(turn_id)
    if row is None or row.status != "Completed":
        raise RuntimeError(f"turn {turn_id} of {agent_id} did not complete: {row and row.status} {row and row.output}")
    return _ms(sent_at, row.updated_at)


def _progress(what: str, since: float) -> None:
    print(f"  {what} ({time.perf_counter() - since:.1f} s)", file=sys.stderr, flush=True)


def _registered_count(host: Any) -> int:
    """Agent entities that exist in the engine's state."""
    return host.conn.execute(
        "SELECT COUNT(*) FROM df_entities WHERE name = ? AND exists_ = 1", (ENTITY_NAME,)).fetchone()[0]


def _db_bytes(host: Any) -> int:
    """The engine's SQLite file, its write-ahead log checkpointed into it first."""
    host.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return sum(Path(path).stat().st_size for path in (host.state_path, host.state_path + "-wal") if Path(path).exists())


def sleeping_agents_in_child(count: int, mode: str) -> dict[str, Any]:
    """Run part 3 in a fresh interpreter, so memory the other parts freed cannot hide growth.
    ``declared`` also measures ``restarted``, in a second fresh interpreter over the same folder."""
    if mode != "declared":
        return _child(count, mode)
    with tempfile.TemporaryDirectory(prefix="aos-bench-agents-") as folder:
        found = _child(count, mode, folder)
        again = _child(count, "restarted", folder)
    delta = again["rss_mib"] - found["rss_before_mib"]
    found["restarted"] = {**again, "rss_delta_mib": round(delta, 1), "rss_per_agent_bytes": round(delta * 2**20 / count)}
    return found


def _child(count: int, mode: str, folder: str | None = None) -> dict[str, Any]:
    import subprocess

    command = [sys.executable, "-m", "bench.agent_turns", "--child-agents", str(count), "--child-mode", mode]
    command += ["--child-folder", folder] if folder else []
    done = subprocess.run(command, cwd=Path(__file__).resolve().parents[1], stdout=subprocess.PIPE, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- main -----------------------------------------------------------------------------------------

async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "agent_turns", "quick": args.quick}
    if args.turns:
        args.latency_turns = max(1, args.latency_turns)
        _say(f"[1/3] {args.turns} agent turns to {args.burst_agents} agent(s), then {args.latency_turns} one at a time")
        agent = await turn_overhead(args.turns, args.latency_turns, args.burst_agents)
        _say(f"[1/3] the alternative: {args.turns} no-op durable workflows, then {args.latency_turns} one at a time")
        noop = await noop_baseline(args.turns, args.latency_turns)
        single, noop_single = agent["one_at_a_time_ms"], noop["one_at_a_time_ms"]["created_to_done"]
        result["turn_overhead"] = {
            "turns": args.turns, "latency_turns": args.latency_turns, "agent": agent, "noop_workflow": noop,
            "ratio_noop_vs_agent_throughput": round(noop["workflows_per_second"] / agent["agent_turns_per_second"], 1),
            "ratio_agent_send_to_done_vs_noop_p50": round(single["send_to_done"]["p50"] / noop_single["p50"], 1),
            "ratio_agent_orchestration_vs_noop_p50": round(single["created_to_done"]["p50"] / noop_single["p50"], 1),
        }
    if args.state_turns:
        _say(f"[2/3] entity state over {args.state_turns} turns")
        result["entity_state"] = entity_state(args.state_turns)
    if args.agents:
        result["sleeping_agents"] = {}
        for mode in ("direct", "declared") if args.agents_mode == "both" else (args.agents_mode,):
            _say(f"[3/3] {args.agents} sleeping agents, registered {mode} (in a fresh process)")
            result["sleeping_agents"][mode] = sleeping_agents_in_child(args.agents, mode)
    return result


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def summary(result: dict[str, Any]) -> str:
    lines = []
    overhead = result.get("turn_overhead")
    if overhead:
        agent, noop = overhead["agent"], overhead["noop_workflow"]
        burst, single = agent["burst_ms"], agent["one_at_a_time_ms"]
        noop_single = noop["one_at_a_time_ms"]["created_to_done"]
        lines += [
            f"1. Turn overhead, offline provider ({overhead['turns']} events to {agent['burst_agents']} agent(s); "
            f"an agent runs its turns one at a time):",
            f"   {agent['agent_turns_per_second']} turns/s; no-op durable workflows {noop['workflows_per_second']}/s "
            f"({overhead['ratio_noop_vs_agent_throughput']}x)",
            f"   per turn in the burst, lock->done p50 {burst['lock_to_done']['p50']} ms, "
            f"p99 {burst['lock_to_done']['p99']} ms; "
            f"started->finished p50 {burst['inside']['p50']} ms, p99 {burst['inside']['p99']} ms",
            f"   one at a time ({overhead['latency_turns']}), send->done p50 {single['send_to_done']['p50']} ms, "
            f"p99 {single['send_to_done']['p99']} ms (orchestration alone p50 {single['created_to_done']['p50']} ms); "
            f"no-op workflow p50 {noop_single['p50']} ms, p99 {noop_single['p99']} ms "
            f"-> {overhead['ratio_agent_send_to_done_vs_noop_p50']}x",
        ]
    state = result.get("entity_state")
    if state:
        lines.append(f"2. Entity state (budget {state['memory_budget']['max_state_bytes']} bytes), "
                     f"vs a naive agent keeping every turn digest:")
        for row in state["marks"]:
            lines.append(f"   {row['turns']:>7} turns: {row['state_bytes']:>6} bytes, {row['us_per_turn']:>7} us/turn"
                         f" | naive: {row['naive_bytes']:>11} bytes, {row['naive_round_trip_ms']:>8} ms per load+save")
        lines.append(f"   last two marks: state {state['growth_last_two_marks']}x, time per turn "
                     f"{state['time_per_turn_last_two_marks']}x; naive/entity bytes at the end "
                     f"{state['naive_vs_entity_bytes_at_last_mark']}x")
    for mode, agents in (result.get("sleeping_agents") or {}).items():
        phases = ", ".join(f"{k.removesuffix('_seconds')} {v} s" for k, v in agents.items()
                           if k.endswith("_seconds") and k != "register_seconds")
        lines += [
            f"3. {agents['agents']} sleeping agents, registered {mode} in {agents['register_seconds']} s ({phases}):",
            f"   RSS {agents['rss_before_mib']} -> {agents['rss_after_mib']} MiB (+{agents['rss_delta_mib']} MiB, "
            f"{agents['rss_per_agent_bytes']} bytes per agent; +{agents['rss_delta_after_turns_mib']} MiB after "
            f"one agent's sample turns); SQLite {agents['sqlite_bytes_after'] / 2**20:.1f} MiB "
            f"(+{agents['sqlite_bytes_per_agent']} bytes per agent; "
            f"one agent's state {agents['entity_state_bytes_one_agent']} bytes)",
            f"   one agent's turn send->done p50 {agents['turn_send_to_done_ms_before']['p50']} ms before, "
            f"{agents['turn_send_to_done_ms_after']['p50']} ms after",
        ]
        again = agents.get("restarted")
        if again:
            lines.append(f"   restarted over the same folder (started in {again['start_seconds']} s): RSS "
                         f"{again['rss_mib']} MiB, +{again['rss_delta_mib']} MiB over one agent "
                         f"({again['rss_per_agent_bytes']} bytes per agent); turn p50 "
                         f"{again['turn_send_to_done_ms']['p50']} ms; one config file edited: reload "
                         f"{again['config_reload_ms']['p50']} ms, a full load of the folder "
                         f"{again['config_full_load_ms']['p50']} ms; reload, rules and sync "
                         f"{again['config_edit_applied_ms']['p50']} ms; as the watcher applies it "
                         f"{again['config_watcher_ms']['p50']} ms, the event loop's longest pause "
                         f"{again['config_watcher_loop_stall_ms']['p50']} ms")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=None, help="events in the burst (default 300; 0 skips part 1)")
    parser.add_argument("--latency-turns", type=int, default=None, help="turns one at a time (default 100)")
    parser.add_argument("--burst-agents", type=int, default=1, help="agents the burst is spread over (default 1)")
    parser.add_argument("--state-turns", type=int, default=None, help="entity turns (default 100000; 0 skips part 2)")
    parser.add_argument("--agents", type=int, default=None, help="sleeping agents (default 10000; 0 skips part 3)")
    parser.add_argument("--agents-mode", choices=("direct", "declared", "both"), default="both",
                        help="how the sleeping agents are registered (default both, each in its own process)")
    parser.add_argument("--quick", action="store_true", help="small counts (under a minute), for a sanity run")
    parser.add_argument("--child-agents", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-mode", help=argparse.SUPPRESS)
    parser.add_argument("--child-folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    if args.child_agents:
        folder = Path(args.child_folder) if args.child_folder else None
        if args.child_mode == "restarted":
            print(json.dumps(asyncio.run(restarted_agents(folder, args.child_agents))))
        else:
            print(json.dumps(asyncio.run(sleeping_agents(args.child_agents, args.child_mode, keep=folder))))
        return
    defaults = (100, 30, 2_000, 500) if args.quick else (300, 100, 100_000, 10_000)
    for name, default in zip(("turns", "latency_turns", "state_turns", "agents"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, default)
    result = asyncio.run(run(args))
    print(summary(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
