"""Percentiles of one run and the spread of repeated runs, the same way for every scenario."""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping


def percentile(values: Iterable[float], q: float) -> float:
    """The nearest-rank percentile (``q`` in 0..1): a value that was measured, never interpolated."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered))))]


def latency_figures(prefix: str, latencies_ms: list[float]) -> dict[str, float]:
    """``<prefix>p50_ms`` and ``<prefix>p99_ms`` of one run's latencies."""
    return {f"{prefix}p50_ms": round(percentile(latencies_ms, 0.50), 3),
            f"{prefix}p99_ms": round(percentile(latencies_ms, 0.99), 3)}


def spread(values: list[float]) -> dict[str, float | int | list[float]]:
    """Median, min and max of one figure over the repeated runs (with the values, for the record)."""
    if not values:
        raise ValueError("spread of no values")
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3), "n": len(values), "values": [round(v, 3) for v in values]}


def aggregate(runs: list[Mapping[str, float]]) -> dict[str, dict[str, float | int | list[float]]]:
    """Each figure of the runs (one mapping per run) as its spread; a figure missing from a run is skipped there."""
    names: list[str] = []
    for run in runs:
        names += [name for name in run if name not in names]
    return {name: spread([float(run[name]) for run in runs if name in run]) for name in names}
