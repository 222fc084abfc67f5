"""Figures of an event-driven run, computed the same way for our engine and each alternative.

Every system is driven alike: a *burst* of events sent at once (throughput: events from the
first send to the last output; latency includes waiting behind earlier events), then events
*one at a time*, each sent after the previous output (latency alone: event sent -> output).
Times are ``time.perf_counter()`` seconds.
"""

from __future__ import annotations

from collections.abc import Mapping

from bench.stats import latency_figures


def burst_figures(prefix: str, sent: Mapping[str, float], done: Mapping[str, float]) -> dict[str, float]:
    """``<prefix>events_per_second`` and the burst's p50/p99 send->output latency; every event must have an output."""
    missing = [key for key in sent if key not in done]
    if missing:
        raise RuntimeError(f"{len(missing)} of {len(sent)} events produced no output (first: {missing[0]})")
    elapsed = max(done[key] for key in sent) - min(sent.values())
    return {f"{prefix}events_per_second": round(len(sent) / elapsed, 1),
            **latency_figures(f"{prefix}burst_", [(done[key] - sent[key]) * 1000 for key in sent])}


def cpu_figure(prefix: str, cpu_seconds: float, events: int) -> dict[str, float]:
    """``<prefix>cpu_ms_per_event``: the process's CPU time over a burst, per event (all threads)."""
    return {f"{prefix}cpu_ms_per_event": round(cpu_seconds * 1000 / events, 3)}


def one_at_a_time_figures(prefix: str, latencies_ms: list[float]) -> dict[str, float]:
    """``<prefix>p50_ms`` and ``<prefix>p99_ms``: event sent -> output, nothing else in flight."""
    if not latencies_ms:
        raise RuntimeError("no one-at-a-time events were measured")
    return latency_figures(prefix, latencies_ms)


def target(agents: list[str], counter: int) -> str:
    """The agent the ``counter``-th event goes to: round-robin over all agents, across repeats."""
    return agents[counter % len(agents)]
