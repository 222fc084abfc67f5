"""``python -m bench``: every scenario in one run, a table at the end, the results as JSON.

The parent process runs each selected scenario in a child process (``--child NAME``), collects
its per-repeat figures, aggregates them (median, min, max), computes the ratios and the issue's
targets, prints the table and writes the JSON. A scenario whose optional libraries are missing is
reported as skipped with the reason; one that fails is reported as failed (exit status 1), and the
others still run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import machine, report
from bench.scenarios import SCENARIOS, Scenario
from bench.stats import aggregate

REPO = Path(__file__).resolve().parents[1]
DEFAULT_JSON = REPO / "bench" / "results" / "latest.json"
SCHEMA_VERSION = 1


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the issue's counts (10,000 agents, 100,000 turns); "
                        "default: quick mode, under five minutes")
    parser.add_argument("--only", help=f"comma-separated scenarios (default all): {', '.join(SCENARIOS)}")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; median and spread (default 3)")
    parser.add_argument("--json", default=str(DEFAULT_JSON), help="where to write the results (default %(default)s)")
    parser.add_argument("--state-dir", help="folder for the temporary state files (default: the system temp folder)")
    parser.add_argument("--set", action="append", default=[], metavar="SCENARIO.KEY=VALUE",
                        help="override a scenario parameter, VALUE as JSON (e.g. --set engine.agents=[1,100])")
    parser.add_argument("--profile", action="store_true",
                        help="profile each scenario's child with pyinstrument (bench extra); text and HTML "
                             "reports next to the JSON")
    parser.add_argument("--cpus", default="1", metavar="N|all",
                        help="pin each scenario's process (and its threads and subprocesses) to N CPUs, as the "
                             "issue's targets are set on one core (default %(default)s); 'all' pins nothing")
    parser.add_argument("--list", action="store_true", help="list the scenarios and their parameters, then exit")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--child-params", help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    try:
        args.pinned = pinned_cpus(args.cpus)
    except ValueError as error:
        parser.error(str(error))
    return args


def pinned_cpus(spec: str) -> list[int] | None:
    """The CPUs ``--cpus`` asks for, taken from the end of the ones this process may use (the first
    CPU usually takes more of the machine's interrupts); ``None`` for ``all`` or where the OS cannot pin."""
    if spec == "all" or not hasattr(os, "sched_setaffinity"):
        return None
    try:
        count = int(spec)
    except ValueError:
        raise ValueError(f"--cpus must be a whole number or 'all', got {spec!r}") from None
    available = sorted(os.sched_getaffinity(0))
    if not 1 <= count <= len(available):
        raise ValueError(f"--cpus {count}: this process may use {len(available)} CPU(s) ({available})")
    return available[-count:]


def _selected(only: str | None) -> list[Scenario]:
    if not only:
        return list(SCENARIOS.values())
    names = [name.strip() for name in only.split(",") if name.strip()]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise SystemExit(f"--only: unknown scenario(s) {', '.join(unknown)}; known: {', '.join(SCENARIOS)}")
    return [SCENARIOS[name] for name in names]


def _overrides(items: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for item in items:
        name, _, value = item.partition("=")
        scenario, _, key = name.partition(".")
        if not value or not key or scenario not in SCENARIOS:
            raise SystemExit(f"--set {item!r}: expected SCENARIO.KEY=VALUE with SCENARIO one of {', '.join(SCENARIOS)}")
        if key not in SCENARIOS[scenario].quick:
            raise SystemExit(f"--set {item!r}: {scenario} has no parameter {key!r} "
                             f"(it has {', '.join(SCENARIOS[scenario].quick)})")
        try:
            found.setdefault(scenario, {})[key] = json.loads(value)
        except json.JSONDecodeError:
            found.setdefault(scenario, {})[key] = value  # a bare string
    return found


# -- child ----------------------------------------------------------------------------------------

def run_child(args: argparse.Namespace) -> int:
    """Run one scenario in this process and print its result as the last line of stdout."""
    logging.basicConfig(level=logging.ERROR)
    if args.pinned is not None:  # before any thread or subprocess starts: they inherit it
        os.sched_setaffinity(0, args.pinned)
    scenario = SCENARIOS[args.child]
    state_dir = Path(args.state_dir or tempfile.gettempdir())
    tempfile.tempdir = str(state_dir)
    function = scenario.function()
    params = json.loads(args.child_params)
    if args.profile_to:
        from pyinstrument import Profiler

        profiler = Profiler()
        profiler.start()
        try:
            found = function(params, args.repeat, state_dir)
        finally:
            profiler.stop()
            Path(args.profile_to + ".txt").write_text(profiler.output_text(unicode=True, color=False), encoding="utf-8")
            Path(args.profile_to + ".html").write_text(profiler.output_html(), encoding="utf-8")
    else:
        found = function(params, args.repeat, state_dir)
    if hasattr(os, "sched_getaffinity"):  # what the scenario ran on, as the OS saw it at the end
        found["cpus"] = sorted(os.sched_getaffinity(0))
    print(json.dumps(found))
    return 0


# -- parent ---------------------------------------------------------------------------------------

def _spawn(scenario: Scenario, params: dict[str, Any], repeat: int, args: argparse.Namespace,
           state_dir: Path) -> dict[str, Any]:
    command = [sys.executable, "-m", "bench", "--child", scenario.name, "--child-params", json.dumps(params),
               "--repeat", str(repeat), "--state-dir", str(state_dir), "--cpus", args.cpus]
    if args.profile:
        command += ["--profile-to", str(Path(args.json).resolve().parent / f"profile-{scenario.name}")]
    timeout = 7200 if args.full else 900
    try:
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"status": "failed", "reason": f"timed out after {timeout} s"}
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        tail = " | ".join(done.stderr.strip().splitlines()[-6:])
        return {"status": "failed", "reason": f"exit status {done.returncode}: {tail}"}
    try:
        found = json.loads(lines[-1])
    except json.JSONDecodeError:
        return {"status": "failed", "reason": f"no JSON result on the last line: {lines[-1][:200]}"}
    return {"status": "ok", **found}


def run_parent(args: argparse.Namespace) -> int:
    selected = _selected(args.only)
    overrides = _overrides(args.set)
    if args.list:
        for scenario in SCENARIOS.values():
            print(f"{scenario.name:<20} {scenario.title}\n{'':<20} quick {scenario.quick}\n{'':<20} full  {scenario.full}")
        return 0
    state_dir = Path(args.state_dir or tempfile.gettempdir()).resolve()
    if not state_dir.is_dir():
        raise SystemExit(f"--state-dir {state_dir} is not a folder")
    if args.profile:
        from importlib.util import find_spec

        if find_spec("pyinstrument") is None:
            raise SystemExit("--profile needs pyinstrument: pip install -e .[bench]")
    json_path = Path(args.json)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    began = time.perf_counter()
    result: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "mode": "full" if args.full else "quick", "repeat": args.repeat,
        "started": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {**machine.describe(state_dir), "pinned_cpus": args.pinned}, "versions": machine.versions(),
        "parameters": {}, "notes": [], "scenarios": {},
    }
    for scenario in selected:
        params = {**scenario.params(args.full), **overrides.get(scenario.name, {})}
        repeat = args.repeat if args.full or scenario.quick_repeat_cap is None else min(args.repeat,
                                                                                        scenario.quick_repeat_cap)
        result["parameters"][scenario.name] = params
        if not args.full:
            result["notes"] += [note for note in scenario.quick_notes if note not in result["notes"]]
        entry: dict[str, Any] = {"title": scenario.title, "params": params, "repeats": repeat}
        reason = scenario.missing()
        print(f"[bench] {scenario.name}: {scenario.title}" + (f" -- {reason}" if reason else f" ({repeat} run(s))"),
              file=sys.stderr, flush=True)
        if reason:
            entry.update(status="skipped", reason=reason)
        else:
            started = time.perf_counter()
            found = _spawn(scenario, params, repeat, args, state_dir)
            entry["seconds"] = round(time.perf_counter() - started, 1)
            if found["status"] == "ok":
                entry.update(status="ok", figures=aggregate(found["runs"]), details=found.get("details", {}),
                             notes=found.get("notes", []), cpus=found.get("cpus"))
            else:
                entry.update(found)
            print(f"[bench] {scenario.name}: {entry['status']} in {entry['seconds']} s"
                  + (f" -- {entry['reason']}" if entry["status"] != "ok" else ""), file=sys.stderr, flush=True)
        result["scenarios"][scenario.name] = entry
    result["ratios"] = report.ratios(result)
    rows = report.table(result)
    result["targets"] = report.targets(rows)
    result["seconds"] = round(time.perf_counter() - began, 1)
    json_path.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    print()
    print(report.render(rows))
    for note in result["notes"]:
        print(f"note: {note}")
    print(f"\n{result['mode']} mode, {args.repeat} run(s) per scenario, {result['seconds']} s; "
          f"state on {result['machine']['state_dir_disk'].get('fs_type', '?')} at {state_dir}; "
          f"load average at start {result['machine']['load_average_at_start']}; "
          + (f"each scenario pinned to CPU(s) {args.pinned}; " if args.pinned is not None else "not pinned; ")
          + f"results in {json_path}")
    failed = [name for name, entry in result["scenarios"].items() if entry["status"] == "failed"]
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run_child(args) if args.child else run_parent(args)
