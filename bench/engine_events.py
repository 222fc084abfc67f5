"""Our side: the embedded engine running the unmodified ``function_app.py`` (``kernel.platform.Platform``).

``agents`` agents are declared in config (``bench.agent_turns.agent_config``: a finance agent with
goals, no tools, the offline provider) and registered by the platform's config sync before timing.
Each event is an envelope addressed to one agent, sent on the ``agent-events`` topic of the
engine's bus; it is a full turn: wake trigger, entity lock and queue, purpose check, model call
(offline), archive, publish on ``agent-outputs``, finish. State is the engine's SQLite file (WAL,
``synchronous=NORMAL``) in a temporary folder on disk.

The output time is when the turn's output is put on ``agent-outputs``: the bench wraps the
``send`` of its own platform's bus and notes each message whose correlation id is one of its
events (a turn's outputs carry the event's id there).
"""

from __future__ import annotations

import asyncio
import json
import logging
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench import instructions, job
from bench.agent_turns import agent_config
from bench.measure import burst_figures, cpu_figure, one_at_a_time_figures, target
from bench.sqlite_count import COUNTED_EVENTS, CommitCounter
from kernel.messages import Envelope
from kernel.ports import OutboundMessage
from kernel.topology import AGENT_EVENTS, AGENT_OUTPUTS


class OutputClock:
    """Wraps a bus's ``send``: when each output caused by one of our events was put on ``agent-outputs``."""

    def __init__(self, bus: Any) -> None:
        self.done: dict[str, float] = {}
        self._send = bus.send
        bus.send = self._timed_send

    def _timed_send(self, entity: str, messages: Any) -> Any:
        result = self._send(entity, messages)
        if entity == AGENT_OUTPUTS:
            now = time.perf_counter()
            for message in messages if isinstance(messages, (list, tuple)) else [messages]:
                if message.correlation_id is not None:
                    self.done.setdefault(message.correlation_id, now)
        return result


async def _send(host: Any, agent_id: str, n: int) -> str:
    """One event to ``agent_id`` on agent-events (as a producer would send it); its id."""
    item = job.event(agent_id, n)
    envelope = Envelope(id=uuid.uuid4().hex, type=item.type, source="bench", to=agent_id, data=item.data)
    message = OutboundMessage.from_envelope(envelope)
    await host.send(AGENT_EVENTS, message.body, message_id=message.message_id, subject=message.subject, to=message.to,
                    content_type=message.content_type, properties=message.application_properties)
    return envelope.id


async def _one_count(count: int, params: dict[str, Any], repeat: int, folder: Path,
                     runs: list[dict[str, float]], details: dict[str, Any], commits: CommitCounter) -> None:
    from kernel.platform import Platform

    agents = job.agent_ids(count, "bench-agent")
    configs = folder / f"configs-{count}"
    configs.mkdir()
    for agent_id in agents:
        (configs / f"{agent_id}.json").write_text(json.dumps(agent_config(agent_id)), encoding="utf-8")
    started = time.perf_counter()
    async with Platform(state_dir=folder / f"state-{count}", port=0, config_paths=str(configs), watch_interval=3600,
                        extra_settings={"AOS_INFERENCE_ENDPOINT": ""}) as platform:
        host = platform.host
        await platform.wait_idle(max(600, count / 5))
        details[f"register_seconds_agents_{count}"] = round(time.perf_counter() - started, 2)
        clock = OutputClock(host.bus)
        counter = 0
        warm = []
        for _ in range(params["warmup"]):
            warm.append(await _send(host, target(agents, counter), counter))
            counter += 1
        await platform.wait_idle(120)
        if any(key not in clock.done for key in warm):
            raise RuntimeError(f"a warm-up turn published no output on {AGENT_OUTPUTS}: is the agent answering?")
        for index in range(repeat):
            sent = {}
            with instructions.counted():
                cpu = time.process_time()
                for _ in range(params["events"]):
                    before = time.perf_counter()
                    event_id = await _send(host, target(agents, counter), counter)
                    sent[event_id] = before
                    counter += 1
                await platform.wait_idle(max(300, params["events"]))
                cpu = time.process_time() - cpu
            latencies = []
            for _ in range(params["sequential"]):
                before = time.perf_counter()
                event_id = await _send(host, target(agents, counter), counter)
                counter += 1
                await platform.wait_idle(60)  # the turn runs to its end (finish) before the next event
                if event_id not in clock.done:
                    raise RuntimeError(f"the turn of event {event_id} published no output on {AGENT_OUTPUTS}")
                latencies.append((clock.done[event_id] - before) * 1000)
            prefix = f"agents_{count}."
            runs[index].update(burst_figures(prefix, sent, clock.done))
            runs[index].update(cpu_figure(prefix, cpu, len(sent)))
            runs[index].update(one_at_a_time_figures(prefix, latencies))
        if params.get("count_commits", True):
            counted = min(COUNTED_EVENTS, params["events"])  # a burst like the timed ones, with commits counted
            with commits.counting():
                for _ in range(counted):
                    await _send(host, target(agents, counter), counter)
                    counter += 1
                await platform.wait_idle(max(300, counted))
            details[f"commits_per_event_agents_{count}"] = commits.per_event(counted)
        host.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        details[f"sqlite_bytes_agents_{count}"] = Path(host.state_path).stat().st_size
        details["synchronous"] = {0: "OFF", 1: "NORMAL", 2: "FULL", 3: "EXTRA"}[
            host.conn.execute("PRAGMA synchronous").fetchone()[0]]
        details["journal_mode"] = host.conn.execute("PRAGMA journal_mode").fetchone()[0]


def run(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """Per agent count (each on a fresh platform): a burst of ``events``, then ``sequential`` one at a time."""
    logging.getLogger().setLevel(logging.ERROR)
    runs: list[dict[str, float]] = [{} for _ in range(repeat)]
    details: dict[str, Any] = {}
    commits = CommitCounter().install()  # notes the platform's connections as it opens them
    try:
        with tempfile.TemporaryDirectory(prefix="aos-bench-engine-", dir=state_dir) as folder:
            for count in params["agents"]:
                asyncio.run(_one_count(count, params, repeat, Path(folder), runs, details, commits))
    finally:
        commits.uninstall()
    return {"runs": runs, "details": details}
