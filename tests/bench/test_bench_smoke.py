"""`python -m bench` as a user runs it: a real child process per scenario, a table, a JSON file.

Tiny counts, no timing assertions: figures must exist, be positive and have the documented shape.
Only scenarios that need nothing beyond the project (floor, import), so the `bench` extra is not
required here; the alternatives' skip path is checked on the scenario registry itself.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.scenarios import EXTRA_HINT, SCENARIOS, Scenario
from bench.stats import aggregate, percentile

REPO = Path(__file__).resolve().parents[2]


def _bench(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOS_")}
    return subprocess.run([sys.executable, "-m", "bench", *args], check=False, cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _positive_spread(spread: dict) -> None:
    assert set(spread) == {"median", "min", "max", "n", "values"}
    assert spread["n"] == len(spread["values"]) >= 1
    assert 0 < spread["min"] <= spread["median"] <= spread["max"]


def test_floor_and_import_write_the_documented_json(tmp_path: Path) -> None:
    out = tmp_path / "results" / "bench.json"
    done = _bench("--only", "floor,import", "--repeat", "1", "--json", str(out), "--state-dir", str(tmp_path),
                  "--set", "floor.agents=[1,10]", "--set", "floor.events=50", "--set", "floor.warmup=5",
                  "--set", 'import.roles=["all"]')
    assert done.returncode == 0, done.stderr
    assert "scenario" in done.stdout and "import function_app (all) ms" in done.stdout

    result = json.loads(out.read_text())
    assert result["schema_version"] == 1 and result["mode"] == "quick" and result["repeat"] == 1
    machine = result["machine"]
    assert machine["cores"] >= 1 and machine["cpu_model"] and machine["python"].startswith("3.")
    assert machine["state_dir_disk"]["path"] == str(tmp_path.resolve())
    assert result["versions"]["aos"] and result["versions"]["azure-functions-durable"]
    assert result["versions"]["sqlite3_library"].count(".") == 2
    assert result["parameters"]["floor"] == {"agents": [1, 10], "events": 50, "warmup": 5}
    assert list(result["scenarios"]) == ["floor", "import"]
    pinned = machine["pinned_cpus"]  # the default: one core, as the targets are set
    assert len(pinned) == 1 and pinned[0] in os.sched_getaffinity(0)
    assert all(result["scenarios"][name]["cpus"] == pinned for name in ("floor", "import"))

    floor = result["scenarios"]["floor"]
    assert floor["status"] == "ok" and floor["repeats"] == 1 and floor["seconds"] > 0
    for mode in ("normal", "full"):
        for count in (1, 10):
            for figure in ("events_per_second", "p50_ms", "p99_ms", "cpu_ms_per_event"):
                _positive_spread(floor["figures"][f"{mode}.agents_{count}.{figure}"])
    assert floor["details"]["journal_mode"] == "WAL"

    imports = result["scenarios"]["import"]
    assert imports["status"] == "ok"
    _positive_spread(imports["figures"]["all.import_ms"])
    _positive_spread(imports["figures"]["all.process_ms"])
    assert imports["figures"]["all.process_ms"]["median"] > imports["figures"]["all.import_ms"]["median"]
    top = imports["details"]["all"]["top_first_level_cumulative_ms"]
    assert 1 <= len(top) <= 5 and all(ms > 0 for ms in top.values())

    targets = result["targets"]
    assert [t["figure"] for t in targets] == ["import function_app (all) ms"]
    assert targets[0]["target"] == "< 1,000" and isinstance(targets[0]["met"], bool)
    assert targets[0]["met"] == (imports["figures"]["all.import_ms"]["median"] < 1000)


def test_bad_options_name_what_is_wrong(tmp_path: Path) -> None:
    done = _bench("--only", "floor,nosuch", "--json", str(tmp_path / "x.json"))
    assert done.returncode != 0 and "unknown scenario(s) nosuch" in done.stderr
    done = _bench("--only", "floor", "--set", "floor.nokey=1", "--json", str(tmp_path / "x.json"))
    assert done.returncode != 0 and "floor has no parameter 'nokey'" in done.stderr
    done = _bench("--only", "floor", "--cpus", "0", "--json", str(tmp_path / "x.json"))
    assert done.returncode != 0 and "--cpus 0: this process may use" in done.stderr
    done = _bench("--only", "floor", "--cpus", "two", "--json", str(tmp_path / "x.json"))
    assert done.returncode != 0 and "--cpus must be a whole number or 'all', got 'two'" in done.stderr
    assert not (tmp_path / "x.json").exists()


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to tell pinned from not")
def test_cpus_all_leaves_the_scenarios_unpinned(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = _bench("--only", "floor", "--repeat", "1", "--cpus", "all", "--json", str(out), "--state-dir", str(tmp_path),
                  "--set", "floor.agents=[1]", "--set", "floor.events=20", "--set", "floor.warmup=2")
    assert done.returncode == 0, done.stderr
    result = json.loads(out.read_text())
    assert result["machine"]["pinned_cpus"] is None and "not pinned" in done.stdout
    assert result["scenarios"]["floor"]["cpus"] == sorted(os.sched_getaffinity(0))


def test_a_scenario_without_its_libraries_is_skipped_with_the_install_hint() -> None:
    absent = Scenario("x", "x", "bench.floor:run", {}, {}, needs=("aos_bench_no_such_module",))
    assert absent.missing() == f"skipped: {EXTRA_HINT} (aos_bench_no_such_module not installed)"
    assert {"langgraph", "langgraph_defaults", "autogen"} <= {name for name, s in SCENARIOS.items() if s.needs}
    assert not SCENARIOS["engine"].needs and not SCENARIOS["floor"].needs and not SCENARIOS["import"].needs


def test_repeats_aggregate_to_median_and_spread() -> None:
    found = aggregate([{"a": 3.0, "b": 1.0}, {"a": 1.0}, {"a": 2.0, "b": 5.0}])
    assert found["a"] == {"median": 2.0, "min": 1.0, "max": 3.0, "n": 3, "values": [3.0, 1.0, 2.0]}
    assert found["b"]["n"] == 2 and found["b"]["median"] == 3.0
    assert percentile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5) == 3.0
    with pytest.raises(ValueError):
        percentile([], 0.5)
