"""Ratios, the issue's targets (met or not) and the closing table, from the aggregated figures.

Targets (issue 9, quick mode, state on disk): at least 2x LangGraph's events/s and p99 below
LangGraph's p50; 2,000 turns/s and p50 under 2 ms on the engine; turns/s at the most agents within
20% of 1 agent; state and time per turn after the most turns equal to after 10 (read as: within
20%); 10,000 sleeping agents under 25 MB; function_app.py imported in under 1 s; and from issue 5,
the gateway's overhead over a direct MCP call "a few ms at most" (5 ms).
"""

from __future__ import annotations

from typing import Any

SYSTEMS = ("engine", "langgraph", "autogen")


def _median(result: dict[str, Any], scenario: str, figure: str) -> float | None:
    found = result["scenarios"].get(scenario, {})
    if found.get("status") != "ok":
        return None
    value = found["figures"].get(figure)
    return None if value is None else value["median"]


def fmt(value: float) -> str:
    """Three significant digits or so, thousands separated: 23,710 / 873 / 17.6 / 0.016."""
    size = abs(value)
    if size >= 100:
        return f"{value:,.0f}"
    if size >= 10:
        return f"{value:.1f}"
    if size >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def _text(result: dict[str, Any], scenario: str, figure: str) -> str:
    value = result["scenarios"][scenario]["figures"][figure]
    if value["n"] == 1:
        return fmt(value["median"])
    return f"{fmt(value['median'])} ({fmt(value['min'])}-{fmt(value['max'])})"


def _agent_counts(result: dict[str, Any], scenario: str) -> list[int]:
    found = result["scenarios"].get(scenario, {})
    if found.get("status") != "ok":
        return []
    return sorted({int(part.removeprefix("agents_")) for name in found["figures"] for part in name.split(".")
                   if part.startswith("agents_")})


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else float(f"{a / b:.4g}")


def _agents(n: int | str) -> str:
    return f"{n} agent" if str(n) == "1" else f"{n} agents"


def ratios(result: dict[str, Any]) -> dict[str, float]:
    """Ours against each alternative and each system against the floor, per agent count (medians)."""
    out: dict[str, float] = {}
    for n in _agent_counts(result, "engine") or _agent_counts(result, "floor"):
        eps = {s: _median(result, s, f"agents_{n}.events_per_second") for s in SYSTEMS}
        floor = _median(result, "floor", f"normal.agents_{n}.events_per_second")
        pairs = {
            f"agents_{n}.ours_vs_langgraph_events_per_second": _ratio(eps["engine"], eps["langgraph"]),
            f"agents_{n}.ours_vs_autogen_events_per_second": _ratio(eps["engine"], eps["autogen"]),
            f"agents_{n}.ours_p99_vs_langgraph_p50": _ratio(_median(result, "engine", f"agents_{n}.p99_ms"),
                                                           _median(result, "langgraph", f"agents_{n}.p50_ms")),
            **{f"agents_{n}.{s}_share_of_floor": _ratio(eps[s], floor) for s in SYSTEMS},
        }
        out.update({k: v for k, v in pairs.items() if v is not None})
    for n in _agent_counts(result, "instructions"):
        per_event = {s: _median(result, "instructions", f"{s}.agents_{n}.instructions_per_event") for s in SYSTEMS}
        counted = _ratio(per_event["langgraph"], per_event["engine"])  # fewer instructions: faster, as events/s
        if counted is not None:
            out[f"agents_{n}.ours_vs_langgraph_instructions"] = counted
    defaults = _ratio(_median(result, "engine", "agents_1.events_per_second"),
                      _median(result, "langgraph_defaults", "agents_1.events_per_second"))
    if defaults is not None:
        out["agents_1.ours_vs_langgraph_defaults_events_per_second"] = defaults
    counts = _agent_counts(result, "engine")
    if len(counts) > 1:
        flat = _ratio(_median(result, "engine", f"agents_{counts[-1]}.events_per_second"),
                      _median(result, "engine", f"agents_{counts[0]}.events_per_second"))
        if flat is not None:
            out[f"engine_agents_{counts[-1]}_vs_agents_{counts[0]}_events_per_second"] = flat
    return out


def _row(rows: list[dict[str, Any]], scenario: str, figure: str, value: str, target: str = "",
         met: bool | None = None, number: float | None = None) -> None:
    rows.append({"scenario": scenario, "figure": figure, "value": value, "target": target, "met": met,
                 "median": number})


def table(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline figure; rows with a target say whether the median meets it."""
    rows: list[dict[str, Any]] = []
    scenarios = result["scenarios"]
    ratio = result["ratios"]
    for name, found in scenarios.items():
        if found["status"] != "ok":
            _row(rows, name, found["status"], found.get("reason", ""))
    for system in SYSTEMS + ("langgraph_defaults",):
        for n in _agent_counts(result, system):
            eps = _median(result, system, f"agents_{n}.events_per_second")
            p50 = _median(result, system, f"agents_{n}.p50_ms")
            if system == "engine":
                _row(rows, system, f"{_agents(n)}: turns/s", _text(result, system, f"agents_{n}.events_per_second"),
                     ">= 2,000", eps is not None and eps >= 2000, eps)
                _row(rows, system, f"{_agents(n)}: p50 event->output ms",
                     _text(result, system, f"agents_{n}.p50_ms"), "< 2", p50 is not None and p50 < 2, p50)
            else:
                _row(rows, system, f"{_agents(n)}: events/s", _text(result, system, f"agents_{n}.events_per_second"),
                     number=eps)
                _row(rows, system, f"{_agents(n)}: p50 event->output ms", _text(result, system, f"agents_{n}.p50_ms"),
                     number=p50)
            _row(rows, system, f"{_agents(n)}: p99 event->output ms", _text(result, system, f"agents_{n}.p99_ms"),
                 number=_median(result, system, f"agents_{n}.p99_ms"))
            _work_row(rows, result, system, n)
    for n in _agent_counts(result, "floor"):
        for mode in ("normal", "full"):
            _row(rows, "floor", f"{_agents(n)}: transactions/s ({mode.upper()})",
                 _text(result, "floor", f"{mode}.agents_{n}.events_per_second"),
                 number=_median(result, "floor", f"{mode}.agents_{n}.events_per_second"))
        if f"normal.agents_{n}.cpu_ms_per_event" in scenarios["floor"]["figures"]:
            _row(rows, "floor", f"{_agents(n)}: CPU ms / SQLite commits per event (NORMAL)",
                 f"{_text(result, 'floor', f'normal.agents_{n}.cpu_ms_per_event')} / 1",
                 number=_median(result, "floor", f"normal.agents_{n}.cpu_ms_per_event"))
        _row(rows, "floor", f"{_agents(n)}: p50 / p99 ms (NORMAL)",
             f"{_text(result, 'floor', f'normal.agents_{n}.p50_ms')} / {_text(result, 'floor', f'normal.agents_{n}.p99_ms')}")
    for key, value in ratio.items():
        n, what = key.split(".", 1) if key.startswith("agents_") else ("", key)
        label = f"{_agents(n.removeprefix('agents_'))}: {what}" if n else what
        if what == "ours_vs_langgraph_events_per_second":
            _row(rows, "ratio", label, f"{fmt(value)}x", ">= 2x", value >= 2, value)
        elif what == "ours_p99_vs_langgraph_p50":
            _row(rows, "ratio", label, f"{fmt(value)}", "< 1 (p99 below LangGraph's p50)", value < 1, value)
        elif key.startswith("engine_agents_"):
            _row(rows, "ratio", label, f"{fmt(value)}", ">= 0.8 (within 20%)", value >= 0.8, value)
        else:
            _row(rows, "ratio", label, f"{fmt(value)}", number=value)
    _instruction_rows(rows, result)
    _state_rows(rows, result)
    sleeping = scenarios.get("sleeping", {})
    if sleeping.get("status") == "ok":
        agents = sleeping["params"]["agents"]
        for mode in sleeping["params"]["modes"]:
            delta = _median(result, "sleeping", f"{mode}.rss_delta_mib")
            per_agent = _median(result, "sleeping", f"{mode}.rss_per_agent_bytes")
            scaled = delta if agents == 10_000 else (per_agent or 0) * 10_000 / 2**20
            note = "" if agents == 10_000 else f" (extrapolated from {agents:,} agents)"
            _row(rows, "sleeping", f"{agents:,} agents registered {mode}: RSS added MiB",
                 _text(result, "sleeping", f"{mode}.rss_delta_mib"), "< 25 MB at 10,000" + note,
                 scaled * 1.048576 < 25 if scaled is not None else None, delta)
            after_turns = _median(result, "sleeping", f"{mode}.rss_delta_after_turns_mib")
            if after_turns is not None:
                _row(rows, "sleeping", f"{mode}: RSS added MiB after one agent's sample turns",
                     _text(result, "sleeping", f"{mode}.rss_delta_after_turns_mib"), "< 25 MB at 10,000" + note,
                     after_turns * 1.048576 < 25 if agents == 10_000 else None, after_turns)
            _row(rows, "sleeping", f"{mode}: one agent's turn p50 ms before / after",
                 f"{_text(result, 'sleeping', f'{mode}.turn_p50_ms_before')} / "
                 f"{_text(result, 'sleeping', f'{mode}.turn_p50_ms_after')}")
        restarted = _median(result, "sleeping", "restarted.rss_delta_mib")
        if restarted is not None:
            _row(rows, "sleeping", f"{agents:,} declared agents, new process over their state: RSS added MiB",
                 _text(result, "sleeping", "restarted.rss_delta_mib"), "< 25 MB at 10,000",
                 restarted * 1.048576 < 25 if agents == 10_000 else None, restarted)
            _row(rows, "sleeping", "declared, new process: start s / one agent's turn p50 ms",
                 f"{_text(result, 'sleeping', 'restarted.start_seconds')} / "
                 f"{_text(result, 'sleeping', 'restarted.turn_p50_ms')}")
            if _median(result, "sleeping", "restarted.config_reload_ms") is not None:
                _row(rows, "sleeping", "one config file edited: reload ms / a full load of the folder ms",
                     f"{_text(result, 'sleeping', 'restarted.config_reload_ms')} / "
                     f"{_text(result, 'sleeping', 'restarted.config_full_load_ms')}")
                _row(rows, "sleeping", "one config file edited: reload, bus rules and sync ms (the watcher's work)",
                     _text(result, "sleeping", "restarted.config_edit_applied_ms"))
            if _median(result, "sleeping", "restarted.config_watcher_loop_stall_ms") is not None:
                _row(rows, "sleeping", "one config file edited, applied by the watcher: ms / the event loop's longest pause ms",
                     f"{_text(result, 'sleeping', 'restarted.config_watcher_ms')} / "
                     f"{_text(result, 'sleeping', 'restarted.config_watcher_loop_stall_ms')}")
    imports = scenarios.get("import", {})
    if imports.get("status") == "ok":
        for role in imports["params"]["roles"]:
            ms = _median(result, "import", f"{role}.import_ms")
            _row(rows, "import", f"import function_app ({role}) ms", _text(result, "import", f"{role}.import_ms"),
                 "< 1,000", ms is not None and ms < 1000, ms)
            _row(rows, "import", f"process incl. interpreter ({role}) ms", _text(result, "import", f"{role}.process_ms"),
                 number=_median(result, "import", f"{role}.process_ms"))
    mcp = scenarios.get("mcp", {})
    if mcp.get("status") == "ok":
        for figure, label in (("direct_sdk.p50_ms", "direct SDK call p50 ms"),
                              ("gateway_fresh.p50_ms", "gateway (in process) p50 ms"),
                              ("bus_request_response.p50_ms", "via bus on the engine p50 ms"),
                              ("turn_call_round_trip.p50_ms", "inside a turn, per call p50 ms")):
            if figure in mcp["figures"]:
                _row(rows, "mcp", label, _text(result, "mcp", figure), number=_median(result, "mcp", figure))
        overhead = _median(result, "mcp", "gateway_overhead_over_manager_p50_ms")
        if overhead is not None:
            _row(rows, "mcp", "gateway overhead over a direct call p50 ms",
                 _text(result, "mcp", "gateway_overhead_over_manager_p50_ms"), "<= 5 (issue 5)", overhead <= 5, overhead)
    return rows


def _work_row(rows: list[dict[str, Any]], result: dict[str, Any], system: str, n: int) -> None:
    """What one event costs the system: CPU ms in a burst (all threads), and SQLite transactions
    committed (counted in a pass of its own: a count, not a time, so a noisy machine cannot blur it)."""
    found = result["scenarios"][system]
    cpu = f"agents_{n}.cpu_ms_per_event"
    commits = found.get("details", {}).get(f"commits_per_event_agents_{n}")
    if cpu not in found["figures"] and commits is None:
        return
    _row(rows, system, f"{_agents(n)}: CPU ms / SQLite commits per event",
         f"{_text(result, system, cpu) if cpu in found['figures'] else '-'} / "
         f"{fmt(commits) if commits is not None else '-'}", number=_median(result, system, cpu))


def _instruction_rows(rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    """Millions of instructions per event, per system and agent count (callgrind: repeatable)."""
    for n in _agent_counts(result, "instructions"):
        counts = [_median(result, "instructions", f"{s}.agents_{n}.instructions_per_event") for s in SYSTEMS]
        _row(rows, "instructions", f"{_agents(n)}: M instructions per event, ours / LangGraph / AutoGen",
             " / ".join(fmt(c / 1e6) if c is not None else "-" for c in counts), number=counts[0])


def _state_rows(rows: list[dict[str, Any]], result: dict[str, Any]) -> None:
    found = result["scenarios"].get("state", {})
    if found.get("status") != "ok":
        return
    marks = found["details"]["marks"]
    for mark in marks:
        _row(rows, "state", f"after {mark:,} turns: state bytes / us per turn",
             f"{_text(result, 'state', f'turns_{mark}.state_bytes')} / {_text(result, 'state', f'turns_{mark}.us_per_turn')}")
    first, last = marks[0], marks[-1]
    for figure, label in (("state_bytes", "state bytes"), ("us_per_turn", "time per turn")):
        value = _ratio(_median(result, "state", f"turns_{last}.{figure}"), _median(result, "state", f"turns_{first}.{figure}"))
        if value is not None:
            _row(rows, "state", f"{label} after {last:,} / after {first}", f"{fmt(value)}x", "<= 1.2x (equal)",
                 value <= 1.2, value)
        if len(marks) > 2:
            settled = _ratio(_median(result, "state", f"turns_{last}.{figure}"),
                             _median(result, "state", f"turns_{marks[1]}.{figure}"))
            if settled is not None:
                _row(rows, "state", f"{label} after {last:,} / after {marks[1]:,}", f"{fmt(settled)}x", number=settled)


def targets(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows that carry a target: what the JSON lists under ``targets``."""
    return [row for row in rows if row["target"] and row["met"] is not None]


def render(rows: list[dict[str, Any]]) -> str:
    """The table as fixed-width text."""
    heads = ("scenario", "figure", "value (median, min-max)", "target", "met")
    cells = [(r["scenario"], r["figure"], r["value"], r["target"],
              "" if r["met"] is None or not r["target"] else ("met" if r["met"] else "NOT MET")) for r in rows]
    widths = [max(len(str(c[i])) for c in [heads, *cells]) for i in range(len(heads))]
    def line(values: tuple[Any, ...]) -> str:
        return "  ".join(f"{value!s:<{width}}" for value, width in zip(values, widths)).rstrip()

    return "\n".join([line(heads), line(tuple("-" * w for w in widths)), *(line(c) for c in cells)])
