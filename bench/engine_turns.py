"""Benchmark: agent-turn-shaped orchestrations through the embedded engine, state on a SQLite file.

Each turn: call the agent entity (read context), an activity (the model, excluded: it returns at
once), call the entity (write the turn back), then two activities at once (archive, publish).
Kernel overhead only. Two runs: a throughput run (N turns started together) and a latency run
(turns one after another, p50/p99 from creation to completion). The named alternative is calling
the same user functions directly with no engine, so the ratio says what durability costs.

    python -m bench.engine_turns [--turns 2000] [--latency-turns 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import azure.durable_functions as df
import azure.functions as func

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernel.engine import EmbeddedHost  # noqa: E402
from kernel.engine.clock import parse_timestamp  # noqa: E402

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def agent_turn(context: df.DurableOrchestrationContext):
    agent = df.EntityId("agent", context.get_input()["agent"])
    memory = yield context.call_entity(agent, "context")
    reply = yield context.call_activity("think", {"memory": memory, "event": context.get_input()["event"]})
    yield context.call_entity(agent, "remember", {"turn": reply})
    yield context.task_all([context.call_activity("archive", reply), context.call_activity("publish", reply)])
    return reply


@app.entity_trigger(context_name="context")
def agent(context: df.DurableEntityContext):
    state = context.get_state(lambda: {"turns": 0, "recent": []})
    if context.operation_name == "context":
        context.set_result(state["recent"][-3:])
        return
    state = {"turns": state["turns"] + 1, "recent": (state["recent"] + [context.get_input()["turn"]])[-10:]}
    context.set_state(state)
    context.set_result(state["turns"])


@app.activity_trigger(input_name="request")
async def think(request: dict) -> str:
    return f"reply to {request['event']}"


@app.activity_trigger(input_name="reply")
async def archive(reply: str) -> bool:
    return True


@app.activity_trigger(input_name="reply")
async def publish(reply: str) -> bool:
    return True


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def _latencies(host: EmbeddedHost, ids: list[str]) -> list[float]:
    out = []
    for instance_id in ids:
        row = host.store.load_instance(instance_id)
        assert row is not None and row.status == "Completed", (instance_id, row and row.status, row and row.output)
        out.append((parse_timestamp(row.updated_at) - parse_timestamp(row.created_at)).total_seconds() * 1000)
    return out


async def _direct_calls(host: EmbeddedHost, turns: int) -> float:
    """Seconds per turn for the same user code called directly: entity batches and activities, no engine."""
    from azure.functions._durable_functions import EntityContext

    entity = host.index.entities["agent"].user_function
    think_fn, archive_fn, publish_fn = (host.index.activities[n].user_function for n in ("think", "archive", "publish"))
    state = None
    started = time.perf_counter()
    for i in range(turns):
        batch = {"self": {"name": "agent", "key": "direct"}, "exists": state is not None, "state": state,
                 "batch": [{"name": "context", "input": "null"}]}
        json.loads(entity(context=EntityContext(json.dumps(batch))))
        reply = await think_fn(request={"memory": [], "event": i})
        batch["batch"] = [{"name": "remember", "input": json.dumps(json.dumps({"turn": reply}))}]
        state = json.loads(entity(context=EntityContext(json.dumps(batch))))["entityState"]
        await archive_fn(reply=reply)
        await publish_fn(reply=reply)
    return (time.perf_counter() - started) / max(turns, 1)


async def run(turns: int, latency_turns: int, agents: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as folder:
        async with EmbeddedHost(app, state_path=str(Path(folder) / "bench.sqlite")) as host:
            engine = host.engine
            ids = [engine.start_instance("agent_turn", f"t{i}", json.dumps({"agent": f"a{i % agents}", "event": i}))
                   for i in range(min(200, turns))]
            await host.wait_idle(timeout=120)  # warm-up
            started = time.perf_counter()
            ids = [engine.start_instance("agent_turn", f"T{i}", json.dumps({"agent": f"a{i % agents}", "event": i}))
                   for i in range(turns)]
            await host.wait_idle(timeout=600)
            elapsed = time.perf_counter() - started
            await _latencies(host, ids)
            sequential = []
            for i in range(latency_turns):
                instance_id = engine.start_instance("agent_turn", f"L{i}", json.dumps({"agent": f"a{i % agents}", "event": i}))
                await host.wait_idle(timeout=60)
                sequential.append(instance_id)
            latencies = await _latencies(host, sequential)
            direct = await _direct_calls(host, turns)
    per_turn = elapsed / turns
    return {
        "benchmark": "engine_turns",
        "turns": turns,
        "agents": agents,
        "turns_per_second": round(turns / elapsed, 1),
        "p50_ms": round(statistics.median(latencies), 3),
        "p99_ms": round(_percentile(latencies, 0.99), 3),
        "throughput_ms_per_turn": round(per_turn * 1000, 3),
        "direct_call_ms_per_turn": round(direct * 1000, 4),
        "ratio_vs_direct_calls": round(per_turn / direct, 1) if direct else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=2000)
    parser.add_argument("--latency-turns", type=int, default=300)
    parser.add_argument("--agents", type=int, default=100)
    args = parser.parse_args()
    result = asyncio.run(run(args.turns, args.latency_turns, args.agents))
    print(f"turns/s: {result['turns_per_second']}  p50: {result['p50_ms']} ms  p99: {result['p99_ms']} ms  "
          f"(throughput {result['throughput_ms_per_turn']} ms/turn, {result['ratio_vs_direct_calls']}x direct calls)")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
