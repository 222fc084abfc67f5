"""Benchmark: one MCP tool call through our gateway, layer by layer, against a direct ``mcp`` SDK call.

The tool is ``echo`` of the MCP reference server ``server-everything`` (``mcp_configs/everything.yaml``,
stdio via ``node``): it does nearly nothing, so what is measured is the path to it. Calls are made one
at a time (each waits for the previous one), warm-up calls excluded, and reported as p50 / p99 /
mean / n in milliseconds; rows that are a whole tool call also get their overhead over the direct
SDK call (the named alternative).

1 and 2 run in one process and are **interleaved**: each round calls every row once, in an order
that rotates from round to round, so all rows see the same background (other processes, disk
flushes, a cold server). That matters: an idle ``node`` server answers slower than one called
back to back (about 0.55 ms back to back, about 1.1 ms after 5 ms of other work on this machine),
so a direct row measured alone would flatter the direct call.

1. **direct**
   * *sdk session*: ``ClientSession.call_tool("echo", {"message": ...})`` on an open session over
     the ``mcp`` SDK's own stdio transport, nothing of ours in between (its own server process).
   * *manager*: ``McpServerManager.call_tool``: our supervised session, argument validation
     against the tool's input schema, the call timeout, the result as plain JSON.

2. **gateway in process**: ``ToolGateway.call_tool`` on embedded storage in a temporary state folder
   (blobs as fsynced files, tables in SQLite/WAL), built as the MCPServers app builds it, sharing the
   manager of row 1: allow-list check, once-only lookup and claim blob, the call, the audit record
   (hash-chained, four table operations), the result blob. A fresh call id each time.
   * *repeated call id*: the same request again, served from the stored result.
   * *refused*: a tool the agent is not granted (``get-env``): the allow-list and the audit record.
   * *audit off* and *blob fsync off*: the fresh path without the audit sink, and with the blob
     store's fsync turned off. For attribution only; the platform runs neither.
   Timing wrappers on the blob and table ports, the audit sink and the manager's ``call_tool`` (of
   this bench's own instances) say where each variant's time goes. ``--profile`` adds a cProfile of
   the fresh calls (the event-loop thread; the blob and table work runs in worker threads).

3. **through the bus on the engine**: a ``Platform`` (the unmodified ``function_app.py``, all
   roles, embedded bus and storage in a temporary state folder) with one agent granted
   ``everything.echo``, and a fake OpenAI-compatible model (``tests/inference/fake_openai.py``, an
   HTTP server on loopback). The bench observes through timing wrappers on its own platform's
   objects: its bus's ``send`` (when each request and response is put on the bus), its engine's
   ``tick``, its gateway's ports.
   * *request -> response on the bus*: the bench sends a ``ToolRequest`` envelope on
     ``mcp-requests`` itself, as the turn's ``agent_tool_request`` activity does, and times until
     the ``mcp.response`` with its correlation id is put on ``mcp-responses``; inside it, the
     gateway's own ``call_tool`` and its storage operations. Nobody waits for these answers, so the
     kernel's trigger dead-letters each as an unknown correlation; that runs after the timed
     interval, and the bench lets it settle before the next request.
   * *turn round trip via bus*: ``--turns`` turns in which the model asks for ``--calls-per-turn``
     echo calls in one answer. From each turn's Durable history: ``TaskScheduled`` of
     ``agent_tool_request`` to the ``EventRaised`` named by the call id, i.e. what the orchestration
     waits per call, up to the start of the episode that receives the answer (history timestamps
     are the start times of the engine's episodes). Split at the moments the request and the
     response were put on the bus, with the part of request -> response during which the event
     loop was inside an engine tick (episodes are replayed inline on the loop the gateway's
     trigger runs on). Also: the tool listing's round trip, one loopback Durable client call
     (``get_status``, comparable to the kernel response trigger's one ``raise_event`` per answer),
     the whole turn, and its engine ticks.

Figures only, never assertions on time. Prints a table, then one JSON object (the last line).

    python -m bench.mcp_gateway [--direct 2000] [--gateway 2000] [--bus 500] [--turns 20] [--calls-per-turn 10]
    python -m bench.mcp_gateway --quick              # 200 / 200 / 50 / 5 x 10, well under a minute
    python -m bench.mcp_gateway --quick --profile --state-dir /dev/shm
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from kernel.config.loader import ConfigSet, load_configs  # noqa: E402
from kernel.settings import APP_ROOT  # noqa: E402

AGENT_ID = "bench-echo"
SERVER = "everything"
TOOL = "echo"
EVERYTHING_CONFIG = APP_ROOT / "mcp_configs" / "everything.yaml"
ALIGNED = '{"aligned": true, "reason": "an echo job for this agent"}'
EVENT_TYPE = "echo.requested"
TARGET_MS = 5.0  # "a few milliseconds at most"
STATE_DIR: list[str | None] = [None]  # where the temporary state folders go (--state-dir; default: the system's)


# -- helpers --------------------------------------------------------------------------------------

def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _spread(values: list[float]) -> dict[str, float]:
    return {"p50": round(statistics.median(values), 3), "p99": round(_percentile(values, 0.99), 3),
            "mean": round(statistics.fmean(values), 3), "n": len(values)}


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _message(n: int) -> dict[str, Any]:
    return {"message": f"bench echo {n}"}


def agent_config() -> dict[str, Any]:
    return {
        "kind": "agent",
        "id": AGENT_ID,
        "display_name": "Benchmark echo agent",
        "purpose": "Echo the messages it is sent through the echo tool, and report the echoes.",
        "scope": {"in_scope": ["echo requests"], "out_of_scope": ["pricing"]},
        "tools": [{"server": SERVER, "tools": [TOOL]}],
        "subscriptions": [{"event_types": ["echo.*"]}],
        "model": {"max_tool_calls": 200, "max_steps": 4},
        "memory": {"max_state_bytes": 32768, "window_turns": 8},
    }


def _write_agent(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{AGENT_ID}.json"
    path.write_text(json.dumps(agent_config()), encoding="utf-8")
    return path


def _configs(agent_file: Path) -> ConfigSet:
    configs = load_configs([agent_file, EVERYTHING_CONFIG])
    if not configs.ok:
        raise RuntimeError(f"bench configs do not load: {[p.message for p in configs.errors]}")
    return configs


def _check_echo(result: Any, n: int) -> None:
    text = json.dumps(result, default=str)
    if f"bench echo {n}" not in text:
        raise RuntimeError(f"echo {n} answered something else: {text[:300]}")


class _Recorder:
    """Times the async methods of an object it wraps (a storage port, the audit sink)."""

    def __init__(self, target: Any, label: str, sink: list[dict[str, list[float]]]) -> None:
        self._target, self._label, self._sink = target, label, sink

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._target, name)
        if not asyncio.iscoroutinefunction(attribute):
            return attribute

        async def timed(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await attribute(*args, **kwargs)
            finally:
                self._sink[0][f"{self._label}.{name}"].append((time.perf_counter() - started) * 1000)

        return timed


# -- 1 and 2. direct and gateway in process, interleaved ---------------------------------------------

async def in_process(direct: int, gateway_calls: int, warmup: int, configs: ConfigSet, profile: bool) -> dict[str, Any]:
    """Rows 1 and 2, interleaved: each round calls every row once, in an order that rotates from round
    to round, so that all rows see the same background (other processes, disk flushes).

    The direct SDK row has its own server process; the manager row and the gateway rows share one
    manager (one server process), as the gateway's own manager would be. Every gateway row has timing
    wrappers on its blob and table ports, its audit sink and the manager's ``call_tool`` (this bench's
    own instances), so each says where its time goes."""
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    from kernel.adapters.embedded_blob import EmbeddedBlobStore
    from kernel.adapters.embedded_table import EmbeddedTableStore
    from kernel.governance.audit import AuditLog
    from mcp_servers.gateway import ToolGateway
    from mcp_servers.manager import McpServerManager

    server = configs.mcp_servers[SERVER]
    params = StdioServerParameters(command=server.command, args=list(server.args), cwd=str(APP_ROOT))
    sink: list[dict[str, list[float]]] = [defaultdict(list)]  # the running call's operations
    run_id = uuid.uuid4().hex[:8]
    with tempfile.TemporaryDirectory(prefix="aos-bench-gw-", dir=STATE_DIR[0]) as folder, \
            open(os.devnull, "w") as errlog:
        state = Path(folder)
        tables = EmbeddedTableStore(state / "tables.sqlite")
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session, \
                McpServerManager([server], app_root=APP_ROOT) as manager:
            await session.initialize()
            call_tool = manager.call_tool

            async def managed_call(*args: Any, **kwargs: Any) -> Any:  # the manager's share of a gateway call
                started = time.perf_counter()
                try:
                    return await call_tool(*args, **kwargs)
                finally:
                    sink[0]["manager.call_tool"].append((time.perf_counter() - started) * 1000)

            def gateway(blob_folder: str, *, fsync: bool = True, audited: bool = True) -> Any:
                blobs = _Recorder(EmbeddedBlobStore(state / blob_folder, fsync=fsync), "blob", sink)
                audit = _Recorder(AuditLog(_Recorder(tables, "table", sink)), "audit", sink) if audited else None
                timed_manager = _Replace(manager, call_tool=managed_call)
                claims = _Recorder(tables, "claims", sink)
                return ToolGateway(timed_manager, lambda: configs, blobs, claims, audit)  # type: ignore[arg-type]

            real = gateway("blobs")
            no_audit, no_fsync = gateway("blobs-a", audited=False), gateway("blobs-f", fsync=False)

            async def sdk(n: int) -> None:
                answer = await session.call_tool(TOOL, _message(n))
                if n % 50 == 0:
                    _check_echo(answer.model_dump(mode="json"), n)

            async def managed(n: int) -> None:
                answer = await call_tool(SERVER, TOOL, _message(n))
                if n % 50 == 0:
                    _check_echo(answer, n)

            def fresh_on(gw: Any, tag: str) -> Callable[[int], Awaitable[None]]:
                async def fresh(n: int) -> None:
                    answer = await gw.call_tool(AGENT_ID, SERVER, TOOL, _message(n),
                                                call_id=f"bench-{run_id}-{tag}{n}:0")
                    if n % 50 == 0:
                        _check_echo(answer, n)
                return fresh

            async def repeated(n: int) -> None:
                answer = await real.call_tool(AGENT_ID, SERVER, TOOL, _message(0), call_id=f"bench-{run_id}-p0:0")
                if n % 50 == 0:
                    _check_echo(answer, 0)

            async def refused(n: int) -> None:
                answer = await real.call_tool(AGENT_ID, SERVER, "get-env", {}, call_id=f"bench-{run_id}-r{n}:0")
                if answer.get("error") != "ToolDenied":
                    raise RuntimeError(f"expected a refusal, got {answer}")

            rows: list[tuple[str, int, Callable[[int], Awaitable[None]]]] = [
                ("direct_sdk", direct, sdk), ("direct_manager", direct, managed),
                ("gateway_fresh", gateway_calls, fresh_on(real, "f")), ("gateway_repeated", gateway_calls, repeated),
                ("gateway_refused", gateway_calls, refused),
                ("gateway_no_audit", gateway_calls, fresh_on(no_audit, "a")),
                ("gateway_no_fsync", gateway_calls, fresh_on(no_fsync, "s")),
            ]
            rows = [row for row in rows if row[1] > 0]
            await fresh_on(real, "p")(0)  # the result the repeated row reads
            times: dict[str, list[float]] = defaultdict(list)
            ops: dict[str, dict[str, list[float]]] = {name: defaultdict(list) for name, _, _ in rows}
            profiler = cProfile.Profile() if profile else None
            for n in range(-warmup, max(count for _, count, _ in rows)):
                shift = n % len(rows)
                for name, count, call in rows[shift:] + rows[:shift]:
                    if n >= count:
                        continue
                    sink[0] = defaultdict(list)
                    profiled = profiler is not None and n >= 0 and name == "gateway_fresh"
                    if profiled:
                        profiler.enable()
                    started = time.perf_counter()
                    await call(n if n >= 0 else 1_000_000 - n)
                    elapsed = (time.perf_counter() - started) * 1000
                    if profiled:
                        profiler.disable()
                    if n >= 0:
                        times[name].append(elapsed)
                        for op, values in sink[0].items():
                            ops[name][op].extend(values)
        await tables.close()
    result: dict[str, Any] = {"rows": {}, "gateway_breakdown": {}}
    for name, count, _ in rows:
        result["rows"][name] = _spread(times[name])
        if name.startswith("gateway_"):
            result["gateway_breakdown"][name] = {
                "breakdown_ms_per_call": {op: round(sum(v) / count, 3) for op, v in sorted(ops[name].items())},
                "operations_per_call": {op: round(len(v) / count, 2) for op, v in sorted(ops[name].items())},
                "operation_ms": {op: _spread(v) for op, v in sorted(ops[name].items())},
            }
    if profiler is not None:
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(15)
        result["profile_tottime"] = text.getvalue()
    return result


class _Replace:
    """An object that answers like ``target`` except for the attributes given."""

    def __init__(self, target: Any, **replaced: Any) -> None:
        self._target, self._replaced = target, replaced

    def __getattr__(self, name: str) -> Any:
        return self._replaced[name] if name in self._replaced else getattr(self._target, name)


# -- 3. through the bus on the engine -------------------------------------------------------------

def _history(host: Any, instance_id: str) -> list[dict[str, Any]]:
    return [json.loads(raw) for raw in host.store.load_history(instance_id)]


def _stamp(epoch: float) -> str:
    from kernel.engine.clock import format_timestamp

    return format_timestamp(datetime.fromtimestamp(epoch, timezone.utc))


def _ms_between(start: str, end: str) -> float:
    from kernel.engine.clock import parse_timestamp

    return (parse_timestamp(end) - parse_timestamp(start)).total_seconds() * 1000


def _call_figures(history: list[dict[str, Any]], turn_id: str) -> list[dict[str, Any]]:
    """Per MCP request of a turn: the call id and its TaskScheduled, TaskCompleted and EventRaised times."""
    from kernel.engine import history as h

    scheduled: dict[int, tuple[str, str]] = {}
    completed: dict[str, str] = {}
    raised: dict[str, str] = {}
    order: list[str] = []
    for event in history:
        kind = event.get("EventType")
        if kind == h.TASK_SCHEDULED and event.get("Name") == "agent_tool_request":
            request = json.loads(event["Input"])["request"]
            scheduled[event["EventId"]] = (request["call_id"], event["Timestamp"])
            order.append(request["call_id"])
        elif kind == h.TASK_COMPLETED and event.get("TaskScheduledId") in scheduled:
            completed[scheduled[event["TaskScheduledId"]][0]] = event["Timestamp"]
        elif kind == h.EVENT_RAISED and str(event.get("Name", "")).startswith(f"{turn_id}:"):
            raised[event["Name"]] = event["Timestamp"]
    by_id = {call_id: at for call_id, at in scheduled.values()}
    return [{"call_id": call_id, "scheduled": by_id[call_id], "completed": completed.get(call_id),
             "raised": raised.get(call_id)} for call_id in order]


async def through_bus(probes: int, turns: int, calls_per_turn: int, warmup: int) -> dict[str, Any]:
    from kernel.platform import Platform
    from tests.inference.fake_openai import FakeOpenAI

    with tempfile.TemporaryDirectory(prefix="aos-bench-bus-", dir=STATE_DIR[0]) as folder:
        agent_file = _write_agent(Path(folder) / "configs")
        paths = ",".join([str(agent_file), str(EVERYTHING_CONFIG)])
        async with FakeOpenAI() as model:
            settings = {"AOS_INFERENCE_ENDPOINT": model.base_url, "AOS_INFERENCE_MODEL": "fake-model"}
            async with Platform(state_dir=Path(folder) / "state", port=0, config_paths=paths, watch_interval=3600,
                                extra_settings=settings) as platform:
                await platform.wait_idle(60)
                bench = _OnTheEngine(platform, model, warmup)
                result: dict[str, Any] = {}
                if probes:
                    result.update(await bench.probes(probes))
                if turns:
                    result.update(await bench.turns(turns, calls_per_turn))
                return result


class _OnTheEngine:
    """Section 3 on one running platform. It observes with timing wrappers on this platform's own
    objects only (its bus's ``send``, its engine's ``tick``, its gateway's ports); nothing else changes."""

    def __init__(self, platform: Any, model: Any, warmup: int) -> None:
        from kernel.topology import MCP_REQUESTS, MCP_RESPONSES

        self.platform, self.host, self.model, self.warmup = platform, platform.host, model, warmup
        self.run_id = uuid.uuid4().hex[:8]
        # The moment each request and response is put on the bus: perf counter, and wall clock (epoch
        # seconds) to set against history timestamps.
        self.answered: dict[str, float] = {}
        self.on_bus: dict[tuple[str, str], float] = {}
        self.arrived = asyncio.Event()
        bus_send = self.host.bus.send

        def send(entity: str, messages: Any) -> list[int]:
            numbers = bus_send(entity, messages)
            if entity in (MCP_REQUESTS, MCP_RESPONSES):
                now, wall = time.perf_counter(), time.time()
                for message in messages if isinstance(messages, (list, tuple)) else [messages]:
                    self.on_bus[(entity, str(message.correlation_id))] = wall
                    if entity == MCP_RESPONSES:
                        self.answered[str(message.correlation_id)] = now
                self.arrived.set()
            return numbers

        self.host.bus.send = send
        # The engine's scheduler ticks: episodes are replayed inline, on the loop the gateway runs on.
        self.ticks: list[tuple[float, float]] = []
        engine_tick = self.host.engine.tick

        def tick() -> None:
            started = time.time()
            try:
                engine_tick()
            finally:
                self.ticks.append((started, time.time()))

        self.host.engine.tick = tick

    async def _request(self, n: int) -> None:
        """One ToolRequest on mcp-requests, as the turn's activity sends it; returns when it is answered."""
        from kernel.ports import OutboundMessage
        from kernel.toolbus import ToolRequest
        from kernel.topology import MCP_REQUESTS

        instance = f"bench-probe-{self.run_id}-{n}"
        request = ToolRequest(op="call_tool", agent_id=AGENT_ID, instance_id=instance, call_id=f"{instance}:0",
                              server=SERVER, tool=TOOL, arguments=_message(n))
        message = OutboundMessage.from_envelope(request.envelope())
        await self.host.send(MCP_REQUESTS, message.body, message_id=message.message_id,
                             correlation_id=message.correlation_id, subject=message.subject, reply_to=message.reply_to,
                             content_type=message.content_type, properties=message.application_properties)
        while request.call_id not in self.answered:
            self.arrived.clear()
            await asyncio.wait_for(self.arrived.wait(), 60)

    async def probes(self, count: int) -> dict[str, Any]:
        for n in range(self.warmup):  # the first request starts the MCP server
            await self._request(-1 - n)
            await self.platform.wait_idle(60)
        sink: list[dict[str, list[float]]] = [defaultdict(list)]
        gateway = await _mcp_gateway()
        manager = gateway.manager
        gateway.call_tool = _timing(gateway.call_tool, sink, "gateway.call_tool")  # type: ignore[method-assign]
        manager.call_tool = _timing(manager.call_tool, sink, "manager.call_tool")  # type: ignore[method-assign]
        gateway._results = _Recorder(gateway._results, "blob", sink)  # noqa: SLF001
        if gateway._audit is not None:  # noqa: SLF001
            gateway._audit._tables = _Recorder(gateway._audit._tables, "table", sink)  # noqa: SLF001
            gateway._audit = _Recorder(gateway._audit, "audit", sink)  # noqa: SLF001
        times = []
        for n in range(count):
            started = time.perf_counter()
            await self._request(n)
            times.append((self.answered[f"bench-probe-{self.run_id}-{n}:0"] - started) * 1000)
            await self.platform.wait_idle(60)  # the kernel dead-letters the unclaimed answer: not timed
        ops = sink[0]
        gateway_ms = ops.pop("gateway.call_tool")
        return {
            "bus_request_response": _spread(times),
            "bus_gateway_call_tool": _spread(gateway_ms),
            "bus_gateway_breakdown": {
                "breakdown_ms_per_call": {op: round(sum(v) / count, 3) for op, v in sorted(ops.items())},
                "operations_per_call": {op: round(len(v) / count, 2) for op, v in sorted(ops.items())},
                "operation_ms": {op: _spread(v) for op, v in sorted(ops.items())},
            },
        }

    async def turns(self, turns: int, calls_per_turn: int) -> dict[str, Any]:
        """Turns in which the fake model aligns, asks for ``calls_per_turn`` echo calls, then answers."""
        from kernel.messages import Envelope
        from kernel.ports import OutboundMessage
        from kernel.topology import AGENT_EVENTS, MCP_REQUESTS, MCP_RESPONSES
        from realm_of_agents.ids import turn_instance_id

        host = self.host
        figures: dict[str, list[float]] = defaultdict(list)
        by_index: dict[int, list[float]] = defaultdict(list)
        turn_id = ""
        for n in range(-self.warmup, turns):
            calls = [{"name": f"{SERVER}__{TOOL}", "arguments": _message(abs(n) * 1000 + k)}
                     for k in range(calls_per_turn)]
            self.model.reply(ALIGNED).reply("", tool_calls=calls).reply("Echoed.")
            envelope = Envelope(id=uuid.uuid4().hex, type=EVENT_TYPE, source="bench", to=AGENT_ID,
                                data={"job": f"echo job {n}"})
            message = OutboundMessage.from_envelope(envelope)
            started, started_wall = time.perf_counter(), time.time()
            await host.send(AGENT_EVENTS, message.body, message_id=message.message_id, subject=message.subject,
                            to=message.to, content_type=message.content_type, properties=message.application_properties)
            await self.platform.wait_idle(120)
            elapsed = (time.perf_counter() - started) * 1000
            turn_id = turn_instance_id(AGENT_ID, envelope.id)
            row = host.store.load_instance(turn_id)
            if row is None or row.status != "Completed" or '"replied"' not in (row.output or ""):
                raise RuntimeError(f"turn {turn_id} did not reply: {row and row.status} {row and row.output}")
            if self.model._script:  # noqa: SLF001 - each turn uses up its three answers
                raise RuntimeError("the fake model's script was not used as expected")
            if n < 0:
                continue
            figures["send_to_done"].append(elapsed)
            turn_ticks = [(b, e) for b, e in self.ticks if b >= started_wall]
            figures["engine_tick"].extend((e - b) * 1000 for b, e in turn_ticks)
            figures["engine_ticks_per_turn_ms"].append(sum(e - b for b, e in turn_ticks) * 1000)
            seen = _call_figures(_history(host, turn_id), turn_id)
            tool_calls = [c for c in seen if ":tools:" not in c["call_id"]]
            if len(tool_calls) != calls_per_turn or any(c["raised"] is None for c in seen):
                raise RuntimeError(f"turn {turn_id}: expected {calls_per_turn} answered calls, got {seen}")
            for c in seen:
                if ":tools:" in c["call_id"]:
                    figures["list_tools_round_trip"].append(_ms_between(c["scheduled"], c["raised"]))
            for index, c in enumerate(tool_calls):
                sent, answer = self.on_bus[(MCP_REQUESTS, c["call_id"])], self.on_bus[(MCP_RESPONSES, c["call_id"])]
                total = _ms_between(c["scheduled"], c["raised"])
                by_index[index].append(total)
                figures["call_round_trip"].append(total)
                figures["call_scheduled_to_request_on_bus"].append(_ms_between(c["scheduled"], _stamp(sent)))
                figures["call_request_to_response_on_bus"].append(_ms_between(_stamp(sent), _stamp(answer)))
                figures["call_request_to_response_in_engine_ticks"].append(
                    1000 * sum(max(0.0, min(end, answer) - max(begin, sent)) for begin, end in self.ticks))
                figures["call_response_on_bus_to_raised"].append(_ms_between(_stamp(answer), c["raised"]))
                figures["call_send_activity"].append(_ms_between(c["scheduled"], c["completed"]))
                figures["call_sent_to_answer_raised"].append(_ms_between(c["completed"], c["raised"]))

        # What one Durable client call costs (comparable to the kernel trigger's raise_event per
        # answer): loopback HTTP to the engine's webhook API, as the SDK's client does it.
        status_ms: list[float] = []
        for n in range(-self.warmup, max(20, turns * calls_per_turn)):
            started = time.perf_counter()
            status = await host.client.get_status(turn_id)
            if n >= 0:
                status_ms.append((time.perf_counter() - started) * 1000)
            if str(status.runtime_status.value) != "Completed":
                raise RuntimeError(f"unexpected status of {turn_id}: {status.runtime_status}")
        return {
            "turns": turns,
            "calls_per_turn": calls_per_turn,
            "turn": {name: _spread(values) for name, values in figures.items()},
            "turn_call_round_trip_by_index_p50": {
                index: round(statistics.median(values), 2) for index, values in sorted(by_index.items())},
            "durable_client_get_status": _spread(status_ms),
        }


def _timing(method: Callable[..., Awaitable[Any]], sink: list[dict[str, list[float]]], name: str) -> Any:
    async def timed(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return await method(*args, **kwargs)
        finally:
            sink[0][name].append((time.perf_counter() - started) * 1000)

    return timed


async def _mcp_gateway() -> Any:
    from mcp_servers.services import services

    return await services().gateway()


# -- main -----------------------------------------------------------------------------------------

ROW_LABELS = {
    "direct_sdk": "direct: mcp SDK ClientSession.call_tool",
    "direct_manager": "direct: McpServerManager.call_tool",
    "gateway_fresh": "gateway in process, fresh call id",
    "gateway_repeated": "gateway in process, repeated call id",
    "gateway_refused": "gateway in process, refused (allow-list)",
    "gateway_no_audit": "  (attribution) fresh, audit off",
    "gateway_no_fsync": "  (attribution) fresh, blob fsync off",
    "bus_request_response": "bus: mcp-requests -> mcp-responses",
    "bus_gateway_call_tool": "  of which ToolGateway.call_tool",
    "turn.call_round_trip": "turn round trip via bus (per call)",
    "turn.call_scheduled_to_request_on_bus": "  TaskScheduled -> request on bus",
    "turn.call_request_to_response_on_bus": "  request -> response on bus",
    "turn.call_request_to_response_in_engine_ticks": "    of which the loop ran engine ticks",
    "turn.call_response_on_bus_to_raised": "  response on bus -> EventRaised",
    "durable_client_get_status": "    one Durable client call (get_status)",
    "turn.call_send_activity": "  (TaskScheduled -> TaskCompleted)",
    "turn.list_tools_round_trip": "turn: list_tools round trip",
    "turn.send_to_done": "whole turn (send -> done)",
    "turn.engine_ticks_per_turn_ms": "  of which engine ticks (sum per turn)",
    "turn.engine_tick": "one engine tick (during turns)",
}


#: Rows that are a whole tool call (the others are parts of one): these get the comparison columns.
WHOLE_CALLS = {"direct_sdk", "direct_manager", "gateway_fresh", "gateway_repeated", "gateway_refused",
               "gateway_no_audit", "gateway_no_fsync", "bus_request_response", "bus_gateway_call_tool",
               "turn.call_round_trip", "turn.list_tools_round_trip"}


async def run(args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"benchmark": "mcp_gateway", "quick": args.quick, "rows": {}}
    rows = result["rows"]
    with tempfile.TemporaryDirectory(prefix="aos-bench-cfg-") as folder:
        configs = _configs(_write_agent(Path(folder)))
    warmup = args.warmup
    result["load_average_at_start"] = [round(x, 2) for x in os.getloadavg()]
    result["cpus"] = os.cpu_count()
    result["state_dir"] = tempfile.gettempdir() if STATE_DIR[0] is None else STATE_DIR[0]
    if args.direct or args.gateway:
        _say(f"[1-2/3] in process, interleaved: {args.direct} direct echo calls (mcp SDK session, McpServerManager), "
             f"{args.gateway} through ToolGateway (x5 variants)")
        found = await in_process(args.direct, args.gateway, warmup, configs, args.profile)
        rows.update(found["rows"])
        if found["gateway_breakdown"]:
            result["gateway_breakdown"] = found["gateway_breakdown"]
        if "profile_tottime" in found:
            result["profile_tottime"] = found["profile_tottime"]
    if args.bus or args.turns:
        _say(f"[3/3] platform on the engine: {args.bus} requests on the bus, "
             f"then {args.turns} turns x {args.calls_per_turn} echo calls")
        bus = await through_bus(args.bus, args.turns, args.calls_per_turn, max(2, warmup // 10))
        for name in ("bus_request_response", "bus_gateway_call_tool", "durable_client_get_status"):
            if name in bus:
                rows[name] = bus.pop(name)
        if "bus_gateway_breakdown" in bus:
            result.setdefault("gateway_breakdown", {})["bus_gateway_call_tool"] = bus.pop("bus_gateway_breakdown")
        for name, spread in bus.pop("turn", {}).items():
            rows[f"turn.{name}"] = spread
        result["bus"] = bus
    base = rows.get("direct_sdk")
    if base:
        for name in WHOLE_CALLS & set(rows):
            row = rows[name]
            row["over_direct_p50"] = round(row["p50"] - base["p50"], 3)
            row["x_direct_p50"] = round(row["p50"] / base["p50"], 1)
    fresh, direct = rows.get("gateway_fresh"), rows.get("direct_manager")
    if fresh and direct:
        result["gateway_overhead_over_manager_ms_p50"] = round(fresh["p50"] - direct["p50"], 3)
        result["gateway_overhead_over_manager_ms_p99"] = round(fresh["p99"] - direct["p99"], 3)
        result["meets_target_few_ms"] = result["gateway_overhead_over_manager_ms_p50"] <= TARGET_MS
    return result


def summary(result: dict[str, Any]) -> str:
    rows = result["rows"]
    load = ", ".join(f"{x:g}" for x in result["load_average_at_start"])
    lines = [f"Echo tool of server-everything; state folders under {result['state_dir']}; load average at start "
             f"{load} on {result['cpus']} CPUs. All figures in ms.", "",
             f"{'layer':<44} {'p50 ms':>9} {'p99 ms':>9} {'mean ms':>9} {'n':>6} {'+p50 vs sdk':>12} {'x sdk':>7}"]
    for name, label in ROW_LABELS.items():
        row = rows.get(name)
        if row is None:
            continue
        extra = (f" {row['over_direct_p50']:>+12.2f} {row['x_direct_p50']:>7}" if "over_direct_p50" in row else "")
        lines.append(f"{label:<44} {row['p50']:>9.2f} {row['p99']:>9.2f} {row['mean']:>9.2f} {row['n']:>6}{extra}")
    breakdown = result.get("gateway_breakdown")
    if breakdown:
        variants = [name for name in ("gateway_fresh", "gateway_no_fsync", "gateway_no_audit", "gateway_repeated",
                                      "gateway_refused", "bus_gateway_call_tool") if name in breakdown]
        heads = {"gateway_fresh": "fresh", "gateway_no_fsync": "no fsync", "gateway_no_audit": "no audit",
                 "gateway_repeated": "repeated", "gateway_refused": "refused", "bus_gateway_call_tool": "on platform"}
        names = sorted({op for v in variants for op in breakdown[v]["breakdown_ms_per_call"]},
                       key=lambda op: (op.startswith("table."), op))
        lines += ["", "Where a gateway call's time goes: mean ms per call (operations per call); table.* are inside "
                  "audit.append", f"  {'':<22}" + "".join(f"{heads[v]:>16}" for v in variants)]
        for op in names:
            cells = []
            for v in variants:
                ms, count = breakdown[v]["breakdown_ms_per_call"].get(op), breakdown[v]["operations_per_call"].get(op)
                cells.append(f"{ms:>9.3f} (x{count:g})" if ms is not None else f"{'-':>16}")
            lines.append(f"  {op:<22}" + "".join(f"{cell:>16}" for cell in cells))
        rest = []
        for v in variants:
            ops = breakdown[v]["breakdown_ms_per_call"]
            accounted = sum(ms for op, ms in ops.items() if not op.startswith("table."))
            rest.append(f"{rows[v]['mean'] - accounted:>9.3f}      ")
        lines.append(f"  {'rest (gateway code)':<22}" + "".join(f"{cell:>16}" for cell in rest))
        lines.append(f"  {'total (mean)':<22}" + "".join(f"{rows[v]['mean']:>9.3f}      " for v in variants))
    if "gateway_overhead_over_manager_ms_p50" in result:
        verdict = "meets" if result["meets_target_few_ms"] else "MISSES"
        lines.append("")
        overhead = result["gateway_overhead_over_manager_ms_p50"]
        lines.append(f"Gateway overhead over the manager: p50 {overhead:+.2f} ms, "
                     f"p99 {result['gateway_overhead_over_manager_ms_p99']:+.2f} ms -> {verdict} the "
                     f"'a few ms at most' target ({TARGET_MS:g} ms taken as the bound)")
    bus = result.get("bus")
    if bus and bus.get("turn_call_round_trip_by_index_p50"):
        by_index = ", ".join(f"#{k}: {v}" for k, v in bus["turn_call_round_trip_by_index_p50"].items())
        lines.append(f"Turn round trip by call index in the turn (p50 ms): {by_index}")
    if result.get("profile_tottime"):
        lines += ["", "cProfile of the fresh-call loop (event-loop thread only; blob/table work runs in threads):",
                  result["profile_tottime"]]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--direct", type=int, default=None, help="direct calls per row (default 2000; 0 skips)")
    parser.add_argument("--gateway", type=int, default=None, help="gateway calls per row (default 2000; 0 skips)")
    parser.add_argument("--bus", type=int, default=None, help="request/response pairs on the bus (default 500)")
    parser.add_argument("--turns", type=int, default=None, help="turns driven by the fake model (default 20)")
    parser.add_argument("--calls-per-turn", type=int, default=10, help="echo calls the model asks for per turn")
    parser.add_argument("--warmup", type=int, default=20, help="warm-up calls per row, not counted (default 20)")
    parser.add_argument("--quick", action="store_true", help="small counts (well under a minute)")
    parser.add_argument("--full", action="store_true", help="the default large counts (for symmetry with --quick)")
    parser.add_argument("--profile", action="store_true", help="cProfile the in-process gateway's fresh calls")
    parser.add_argument("--state-dir", help="where the temporary state folders go (default: the system temp "
                        "folder); e.g. /dev/shm to take the disk out of the figures")
    args = parser.parse_args()
    STATE_DIR[0] = args.state_dir
    logging.basicConfig(level=logging.ERROR)
    if shutil.which("node") is None or not (APP_ROOT / "node_modules/@modelcontextprotocol/server-everything").is_dir():
        sys.exit("needs node and node_modules/@modelcontextprotocol/server-everything (run `make setup`)")
    defaults = (200, 200, 50, 5) if args.quick else (2000, 2000, 500, 20)
    for name, default in zip(("direct", "gateway", "bus", "turns"), defaults):
        if getattr(args, name) is None:
            setattr(args, name, default)
    result = asyncio.run(run(args))
    print(summary(result))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
