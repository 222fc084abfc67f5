"""The scenarios of ``python -m bench``: what each runs, with which counts in quick and full mode.

Each scenario's ``run(params, repeat, state_dir)`` returns ``{"runs": [figures per repeat],
"details": {...}, "notes": [...]}``, figures being flat ``name -> number`` mappings; the runner
turns them into medians and spreads. Every scenario runs in its own child process, so one's
memory, threads and global state cannot touch another's figures.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

EXTRA_HINT = "pip install -e .[bench]"
EVENT_COUNTS_QUICK = {"agents": [1, 100, 1_000], "events": 100, "sequential": 20, "warmup": 10}
EVENT_COUNTS_FULL = {"agents": [1, 100, 10_000], "events": 1_000, "sequential": 200, "warmup": 50}


@dataclass(frozen=True)
class Scenario:
    name: str
    title: str
    target: str  # "module:function"
    quick: dict[str, Any]
    full: dict[str, Any]
    needs: tuple[str, ...] = ()  # importable modules; missing -> skipped with EXTRA_HINT
    quick_repeat_cap: int | None = None  # quick mode runs it at most this many times
    quick_notes: list[str] = field(default_factory=list)
    unavailable: Callable[[], str | None] | None = None  # a reason it cannot run here (other than the extra)

    def params(self, full: bool) -> dict[str, Any]:
        return dict(self.full if full else self.quick)

    def missing(self) -> str | None:
        """Why this scenario is skipped here, or None."""
        absent = [name for name in self.needs if importlib.util.find_spec(name) is None]
        if absent:
            return f"skipped: {EXTRA_HINT} ({', '.join(absent)} not installed)"
        if self.unavailable is not None:
            reason = self.unavailable()
            if reason:
                return f"skipped: {reason}"
        return None

    def function(self) -> Callable[..., dict[str, Any]]:
        module, name = self.target.split(":")
        return getattr(importlib.import_module(module), name)


def _valgrind_missing() -> str | None:
    from bench.instructions import valgrind_missing

    return valgrind_missing()


def _mcp_missing() -> str | None:
    from bench.reused import mcp_missing

    return mcp_missing()


_MANY = "quick mode: the 'many agents' point is 1,000 agents, not 10,000 (--full runs 10,000)"

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (
    Scenario("engine", "ours: Platform running function_app.py, full turns, offline provider, SQLite on disk",
             "bench.engine_events:run", EVENT_COUNTS_QUICK, EVENT_COUNTS_FULL, quick_notes=[_MANY]),
    Scenario("langgraph", "LangGraph StateGraph + SqliteSaver, durability=sync, synchronous=NORMAL",
             "bench.langgraph_job:run", {**EVENT_COUNTS_QUICK, "durability": "sync", "synchronous": "NORMAL"},
             {**EVENT_COUNTS_FULL, "durability": "sync", "synchronous": "NORMAL"},
             needs=("langgraph", "langgraph.checkpoint.sqlite"), quick_notes=[_MANY]),
    Scenario("langgraph_defaults", "LangGraph out of the box: durability=async, SQLite synchronous=FULL",
             "bench.langgraph_job:run", {**EVENT_COUNTS_QUICK, "agents": [1], "durability": None, "synchronous": None},
             {**EVENT_COUNTS_FULL, "agents": [1], "durability": None, "synchronous": None},
             needs=("langgraph", "langgraph.checkpoint.sqlite")),
    Scenario("autogen", "AutoGen Core SingleThreadedAgentRuntime, state saved per event to SQLite (NORMAL)",
             "bench.autogen_job:run", EVENT_COUNTS_QUICK, EVENT_COUNTS_FULL, needs=("autogen_core",),
             quick_notes=[_MANY]),
    Scenario("instructions", "instructions per event in the same burst, counted by valgrind's callgrind (repeatable)",
             "bench.instructions:run", {"systems": ["engine", "langgraph"], "agents": [1, 100], "events": 50,
                                        "warmup": 10},
             {"systems": ["engine", "langgraph", "autogen"], "agents": [1, 100, 1_000], "events": 200, "warmup": 50},
             quick_repeat_cap=1, unavailable=_valgrind_missing,
             quick_notes=[("quick mode: instructions counted once (our turn's count repeats to about 2 %), 50 events "
                           "per agent count, ours and LangGraph only (--full adds AutoGen, 1,000 agents, 200 events)")]),
    Scenario("floor", "one SQLite transaction per event (WAL; synchronous NORMAL as our store, and FULL)",
             "bench.floor:run", {"agents": [1, 100, 1_000], "events": 2_000, "warmup": 100},
             {"agents": [1, 100, 10_000], "events": 20_000, "warmup": 1_000}),
    Scenario("state", "agent entity state size and time per turn after 10 ... 100,000 turns of one agent",
             "bench.reused:state", {"turns": 10_000}, {"turns": 100_000}, quick_repeat_cap=1,
             quick_notes=[("quick mode: state capped at 10,000 turns (--full runs 100,000), one run: sizes are "
                           "deterministic and each mark's time per turn is already a mean over up to 1,000 turns")]),
    Scenario("sleeping", "resident memory added by sleeping agents (fresh process per run)",
             "bench.reused:sleeping", {"agents": 10_000, "modes": ["direct", "declared"]},
             {"agents": 10_000, "modes": ["direct", "declared"]}, quick_repeat_cap=1,
             quick_notes=[("quick mode: one run of each way of registering 10,000 sleeping agents ('direct', "
                           "'declared' with a new process over the declared state); --full repeats")]),
    Scenario("import", "cold import of function_app.py (python -X importtime), per app role",
             "bench.cold_import:run", {"roles": ["all"]}, {"roles": ["all", "kernel", "realm", "mcp"]},
             quick_notes=["quick mode: import with all three roles only (--full adds each app's role alone)"]),
    Scenario("mcp", "MCP tool call: direct SDK session vs our gateway (bench.mcp_gateway)",
             "bench.reused:mcp", {"direct": 100, "gateway": 100, "bus": 30, "turns": 3},
             {"direct": 2_000, "gateway": 2_000, "bus": 500, "turns": 20}, unavailable=_mcp_missing,
             quick_notes=["quick mode: MCP counts 100 direct / 100 gateway / 30 bus / 3 turns"]),
)}
