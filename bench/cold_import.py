"""Cold import of ``function_app.py``: what the Functions host pays before the first invocation.

Each run is a fresh interpreter, ``python -X importtime -c "import function_app"`` in the
repository root, with the role setting ``AOS_APP_ROLES`` per app (``all`` = unset: the three
roles of local development). Figures: the import of ``function_app`` as ``-X importtime`` reports
it (cumulative, including everything it imports) and the process's wall time (interpreter start
included). "Cold" means a new process; the bytecode cache and the OS page cache are warm, as on
a Functions instance that already has the package on disk.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def parse_importtime(stderr: str) -> list[tuple[str, int, int, int]]:
    """``-X importtime`` lines as (module, depth, self µs, cumulative µs); other lines are skipped.

    A line reads ``import time:  <self> | <cumulative> | <module>``, the module indented two
    spaces per level below the import that caused it.
    """
    rows = []
    for line in stderr.splitlines():
        parts = line.removeprefix("import time:").split("|")
        if not line.startswith("import time:") or len(parts) != 3 or not parts[0].strip().isdigit():
            continue
        name = parts[2].rstrip()
        rows.append((name.strip(), (len(name) - len(name.lstrip(" ")) - 1) // 2, int(parts[0]), int(parts[1])))
    return rows


def one_import(role: str) -> dict[str, Any]:
    """One fresh interpreter importing the app with ``role``; figures and the top modules."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOS_")}
    if role != "all":
        env["AOS_APP_ROLES"] = role
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", "import function_app"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"import function_app failed with AOS_APP_ROLES={role!r}: {done.stderr.strip()[-800:]}")
    rows = parse_importtime(done.stderr)
    app = [row for row in rows if row[0] == "function_app"]
    if not app:
        raise RuntimeError("no function_app line in the -X importtime output")
    first_level = sorted((row for row in rows if row[1] == 1), key=lambda row: -row[3])[:5]
    by_self = sorted(rows, key=lambda row: -row[2])[:5]
    return {"import_ms": round(app[0][3] / 1000, 1), "process_ms": round(wall * 1000, 1),
            "modules": len(rows),
            "top_first_level_cumulative_ms": {name: round(cum / 1000, 1) for name, _, _, cum in first_level},
            "top_self_ms": {name: round(own / 1000, 1) for name, _, own, _ in by_self}}


def run(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """``repeat`` fresh imports per role."""
    runs: list[dict[str, float]] = [{} for _ in range(repeat)]
    details: dict[str, Any] = {}
    for index in range(repeat):
        for role in params["roles"]:
            found = one_import(role)
            runs[index][f"{role}.import_ms"] = found["import_ms"]
            runs[index][f"{role}.process_ms"] = found["process_ms"]
            details[role] = {k: found[k] for k in ("modules", "top_first_level_cumulative_ms", "top_self_ms")}
    return {"runs": runs, "details": details, "notes": ["top modules are from the last run"]}
