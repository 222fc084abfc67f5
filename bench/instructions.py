"""Instructions per event, counted by valgrind's callgrind: a figure a noisy machine cannot blur.

Times and CPU seconds on a shared VM move by tens of percent from one run to the next (round 17
saw 5.4 to 9.9 ms of CPU per turn for the same tree), so a lever worth a few percent cannot be
seen in them. The number of machine instructions a burst executes is the same on a quiet machine
and a busy one, for the same code and inputs: callgrind counts them, at about 40 times the run time.

Each system's own bench job (ours, LangGraph, AutoGen) runs in a child process under
``valgrind --tool=callgrind --instr-atstart=no``; the job wraps its timed burst in ``counted()``,
which switches collection on for the burst alone (``callgrind_control``), so start-up, registration
and warm-up are not in the count. The figure is the burst's instructions divided by its events,
across all the process's threads. One run suffices: four counts of our turn at 100 agents spread over
about 2 % (what differs is how the engine's ticks happen to batch); a single thread repeats exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Set in the child run under callgrind: ``counted()`` switches collection on and off around the burst.
ENV = "AOS_BENCH_CALLGRIND"
TOOLS = ("valgrind", "callgrind_control")


@contextmanager
def counted() -> Iterator[None]:
    """Around a burst: callgrind collects instructions inside it only. A no-op outside callgrind."""
    if not os.environ.get(ENV):
        yield
        return
    _collect(True)
    try:
        yield
    finally:
        _collect(False)


def _collect(on: bool) -> None:
    subprocess.run(["callgrind_control", f"--instr={'on' if on else 'off'}", str(os.getpid())],
                   check=True, capture_output=True, timeout=60)


def valgrind_missing() -> str | None:
    """Why instructions cannot be counted here, or None."""
    absent = [tool for tool in TOOLS if shutil.which(tool) is None]
    return f"{' and '.join(absent)} not found (Debian: apt install valgrind)" if absent else None


def total_instructions(callgrind_out: Path) -> int:
    """The ``totals:`` line of a callgrind output file: every instruction collected, all threads."""
    for line in callgrind_out.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("totals:"):
            return int(line.split()[1])
    raise RuntimeError(f"{callgrind_out} has no 'totals:' line: did callgrind collect anything?")


def _scenario(system: str) -> Any:
    """The timed scenario of ``system``: its job, its settings and what it needs are counted as they are."""
    from bench.scenarios import SCENARIOS  # the registry imports this module's checks lazily too

    return SCENARIOS[system]


def job_params(system: str, agents: int, params: dict[str, Any]) -> dict[str, Any]:
    """The system's job as its timed scenario runs it (LangGraph: its durability and synchronous
    settings), at ``agents`` agents and this scenario's counts, with no commit-counting pass."""
    return _scenario(system).params(full=False) | {
        "agents": [agents], "events": params["events"], "warmup": params["warmup"], "sequential": 1,
        "count_commits": False}


def _count(system: str, agents: int, params: dict[str, Any], state_dir: Path, folder: Path) -> int:
    """Run ``system``'s job for one agent count under callgrind; the instructions its burst executed."""
    out = folder / f"callgrind-{system}-{agents}.out"
    command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
               sys.executable, "-m", "bench.instructions", system, json.dumps(job_params(system, agents, params)),
               str(state_dir)]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, ENV: "1"},
                          timeout=params.get("timeout", 1800))
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise RuntimeError(f"{system} at {agents} agents under callgrind exited {done.returncode}:\n{tail}")
    return total_instructions(out)


def run(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """Instructions per event of each system's burst, per agent count (``repeat`` is ignored: the count repeats)."""
    figures: dict[str, float] = {}
    notes = []
    with tempfile.TemporaryDirectory(prefix="aos-bench-callgrind-", dir=state_dir) as folder:
        for system in params["systems"]:
            missing = _scenario(system).missing()  # the timed scenario's own check (the bench extra)
            if missing is not None:
                notes.append(f"instructions: {system} not counted ({missing})")
                continue
            for agents in params["agents"]:
                total = _count(system, agents, params, state_dir, Path(folder))
                figures[f"{system}.agents_{agents}.instructions_per_event"] = round(total / params["events"])
    version = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    return {"runs": [figures], "details": {"valgrind": version, "events_counted": params["events"]}, "notes": notes}


def main(argv: list[str]) -> int:
    """The child: ``python -m bench.instructions SYSTEM PARAMS_JSON STATE_DIR`` (run under callgrind)."""
    system, params, state_dir = argv[0], json.loads(argv[1]), Path(argv[2])
    _scenario(system).function()(params, 1, state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
