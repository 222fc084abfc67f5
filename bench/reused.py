"""The scenarios the older benches already measure, run through their own functions.

* ``state``: ``bench.agent_turns.entity_state`` (the real agent entity through the Durable SDK's
  entity handler): state bytes and time per turn at 10, 1,000, 10,000 and 100,000 turns.
* ``sleeping``: ``bench.agent_turns.sleeping_agents_in_child`` (a fresh process per run): RSS
  before and after registering the agents, and one agent's turn latency before and after.
* ``mcp``: ``python -m bench.mcp_gateway`` in a child process: one MCP tool call direct on an open
  session, through the gateway in process, and through the bus on the engine.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.agent_turns import STATE_MARKS, entity_state, sleeping_agents_in_child

REPO = Path(__file__).resolve().parents[1]


def state(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """State bytes and µs per turn at each mark up to ``turns`` (the entity code, no engine, no disk)."""
    runs, details = [], {}
    for _ in range(repeat):
        found = entity_state(params["turns"])
        figures = {}
        for mark in found["marks"]:
            figures[f"turns_{mark['turns']}.state_bytes"] = mark["state_bytes"]
            figures[f"turns_{mark['turns']}.us_per_turn"] = mark["us_per_turn"]
            figures[f"turns_{mark['turns']}.naive_bytes"] = mark["naive_bytes"]
        runs.append(figures)
        details = {"memory_budget": found["memory_budget"], "marks": [m for m in STATE_MARKS if m <= params["turns"]]}
    return {"runs": runs, "details": details}


def sleeping(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """RSS added by ``agents`` sleeping agents, per registration mode, each run in a fresh process."""
    os.environ["TMPDIR"] = str(state_dir)  # the child's temporary state folder goes on the bench's disk
    runs: list[dict[str, float]] = [{} for _ in range(repeat)]
    details: dict[str, Any] = {}
    for index in range(repeat):
        for mode in params["modes"]:
            found = sleeping_agents_in_child(params["agents"], mode)
            prefix = f"{mode}."
            runs[index].update({
                f"{prefix}rss_delta_mib": found["rss_delta_mib"],
                f"{prefix}rss_per_agent_bytes": found["rss_per_agent_bytes"],
                f"{prefix}rss_delta_after_turns_mib": found["rss_delta_after_turns_mib"],
                f"{prefix}sqlite_bytes_per_agent": found["sqlite_bytes_per_agent"],
                f"{prefix}register_seconds": found["register_seconds"],
                f"{prefix}turn_p50_ms_before": found["turn_send_to_done_ms_before"]["p50"],
                f"{prefix}turn_p50_ms_after": found["turn_send_to_done_ms_after"]["p50"],
            })
            details[mode] = {k: found[k] for k in ("rss_before_mib", "rss_after_mib", "entity_state_bytes_one_agent",
                                                   "memory_releases")}
            again = found.get("restarted")
            if again:  # declared agents, in a new process over the same folder: the steady state
                runs[index].update({
                    "restarted.rss_delta_mib": again["rss_delta_mib"],
                    "restarted.rss_per_agent_bytes": again["rss_per_agent_bytes"],
                    "restarted.start_seconds": again["start_seconds"],
                    "restarted.turn_p50_ms": again["turn_send_to_done_ms"]["p50"],
                    "restarted.config_reload_ms": again["config_reload_ms"]["p50"],
                    "restarted.config_full_load_ms": again["config_full_load_ms"]["p50"],
                    "restarted.config_edit_applied_ms": again["config_edit_applied_ms"]["p50"],
                    "restarted.config_watcher_ms": again["config_watcher_ms"]["p50"],
                    "restarted.config_watcher_loop_stall_ms": again["config_watcher_loop_stall_ms"]["p50"],
                })
                details["restarted"] = {"rss_mib": again["rss_mib"]}
    return {"runs": runs, "details": details}


MCP_ROWS = {"direct_sdk": "direct_sdk", "direct_manager": "manager", "gateway_fresh": "gateway_fresh",
            "gateway_repeated": "gateway_repeated", "bus_request_response": "bus_request_response",
            "turn.call_round_trip": "turn_call_round_trip"}


def mcp_missing() -> str | None:
    """Why the MCP scenario cannot run here, or None."""
    if shutil.which("node") is None or not (REPO / "node_modules/@modelcontextprotocol/server-everything").is_dir():
        return "needs node and node_modules/@modelcontextprotocol/server-everything (make setup)"
    return None


def mcp(params: dict[str, Any], repeat: int, state_dir: Path) -> dict[str, Any]:
    """``bench.mcp_gateway`` with the given counts, ``repeat`` times, each in its own process."""
    runs, details = [], {}
    for _ in range(repeat):
        command = [sys.executable, "-m", "bench.mcp_gateway", "--state-dir", str(state_dir)]
        for name in ("direct", "gateway", "bus", "turns"):
            command += [f"--{name}", str(params[name])]
        done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"bench.mcp_gateway failed: {done.stderr.strip()[-800:]}")
        found = json.loads(done.stdout.strip().splitlines()[-1])
        figures = {}
        for row, name in MCP_ROWS.items():
            if row in found["rows"]:
                figures[f"{name}.p50_ms"] = found["rows"][row]["p50"]
                figures[f"{name}.p99_ms"] = found["rows"][row]["p99"]
        if "gateway_overhead_over_manager_ms_p50" in found:
            figures["gateway_overhead_over_manager_p50_ms"] = found["gateway_overhead_over_manager_ms_p50"]
        runs.append(figures)
        details = {"load_average_at_start": found.get("load_average_at_start")}
    return {"runs": runs, "details": details}
