"""The instruction count (``bench.instructions``): under real callgrind, only the burst is counted.

A tiny program does work outside ``counted()`` and a loop of n steps inside it; run under
valgrind for several n, the count must grow with the loop and leave the outside work out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.instructions import ENV, job_params, total_instructions, valgrind_missing
from bench.report import ratios, table

REPO = Path(__file__).resolve().parents[2]
PROGRAM = """
import sys
from bench.instructions import counted

def work(n):
    return sum(i * i for i in range(n))

work(1_000_000)  # before the window: not counted
with counted():
    work(int(sys.argv[1]))
work(1_000_000)  # after it: not counted either
"""


def _count(tmp_path: Path, steps: int) -> int:
    out = tmp_path / f"callgrind-{steps}.out"
    done = subprocess.run(["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}",
                           sys.executable, "-c", PROGRAM, str(steps)], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, ENV: "1", "PYTHONPATH": str(REPO)}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return total_instructions(out)


@pytest.mark.skipif(valgrind_missing() is not None, reason=f"{valgrind_missing()}")
def test_only_the_window_is_counted_and_the_count_follows_the_work(tmp_path: Path) -> None:
    empty, one, two = (_count(tmp_path, steps) for steps in (0, 100_000, 200_000))
    per_step = (one - empty) / 100_000
    assert per_step > 10  # a Python loop step is tens of instructions at least
    # the million steps before and after the window are not in any count
    assert empty < 1_000_000 * per_step / 10
    # twice the steps, twice the instructions (to a few percent: it is a count, not a time)
    assert (two - empty) == pytest.approx(2 * (one - empty), rel=0.05)


def test_an_output_without_totals_is_named(tmp_path: Path) -> None:
    out = tmp_path / "callgrind.out"
    out.write_text("events: Ir\nsummary: 0\n")
    with pytest.raises(RuntimeError, match=r"callgrind\.out has no 'totals:' line"):
        total_instructions(out)


def _figure(value: float) -> dict[str, float | int | list[float]]:
    return {"median": value, "min": value, "max": value, "n": 1, "values": [value]}


def test_the_table_prints_millions_per_event_and_the_ratio_to_langgraph() -> None:
    result = {"scenarios": {"instructions": {"status": "ok", "details": {}, "figures": {
        "engine.agents_100.instructions_per_event": _figure(20_000_000),
        "langgraph.agents_100.instructions_per_event": _figure(10_000_000),
        "autogen.agents_100.instructions_per_event": _figure(3_000_000)}}}}
    result["ratios"] = ratios(result)
    assert result["ratios"] == {"agents_100.ours_vs_langgraph_instructions": 0.5}
    rows = {row["figure"]: row for row in table(result)}
    row = rows["100 agents: M instructions per event, ours / LangGraph / AutoGen"]
    assert row["value"] == "20.0 / 10.0 / 3.00" and row["median"] == 20_000_000
    assert rows["100 agents: ours_vs_langgraph_instructions"]["value"] == "0.5"


def test_each_system_is_counted_as_its_timed_scenario_runs_it() -> None:
    """LangGraph is counted with the timed scenario's durability and synchronous settings, not its defaults."""
    langgraph = job_params("langgraph", 1, {"events": 50, "warmup": 10})
    assert (langgraph["durability"], langgraph["synchronous"]) == ("sync", "NORMAL")
    assert (langgraph["agents"], langgraph["events"], langgraph["warmup"], langgraph["count_commits"]) == (
        [1], 50, 10, False)
