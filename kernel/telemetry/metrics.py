"""The platform's metrics, per agent: turns, turn latency, tokens, tool calls, errors, dead letters.

Turn figures come from the archived turn record, once per turn: the archive activity is the one
step every started turn ends with. It is at-least-once, so a retried archive in the same process
is not counted twice (a small memory of recent turn ids); one retried on another instance after
a crash may be.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from opentelemetry.metrics import Meter

TURNS = "aos.turns"
TURN_DURATION = "aos.turn.duration"
TOKENS = "aos.tokens"
TOOL_CALLS = "aos.tool_calls"
ERRORS = "aos.errors"
DEADLETTERS = "aos.deadletters"
_REMEMBERED_TURNS = 4096


class Instruments:
    """The instruments on one meter, and what records them."""

    def __init__(self, meter: Meter) -> None:
        self.turns = meter.create_counter(TURNS, unit="{turn}", description="Turns finished, by agent and outcome.")
        self.turn_duration = meter.create_histogram(
            TURN_DURATION, unit="s", description="From the turn's start to its archive, by agent and outcome.")
        self.tokens = meter.create_counter(TOKENS, unit="{token}", description="Model tokens, by agent and kind (input, output).")
        self.tool_calls = meter.create_counter(
            TOOL_CALLS, unit="{call}", description="Tool calls, by agent, server, tool and outcome (ok, error).")
        self.errors = meter.create_counter(
            ERRORS, unit="{error}", description="Failures, by agent and kind (turn, model, tool).")
        self.deadletters = meter.create_counter(
            DEADLETTERS, unit="{message}", description="Messages kept in the dead-letter store, by kind, source and agent.")
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    def record_turn(self, record: Mapping[str, Any], seconds: float | None = None) -> bool:
        """Count one archived turn (``realm_of_agents.turn`` record shape) that took ``seconds`` (default:
        its start to its last step); False if this process counted it already."""
        turn_id = str(record.get("turn_id") or "")
        with self._lock:
            if turn_id in self._seen:
                return False
            self._seen[turn_id] = None
            if len(self._seen) > _REMEMBERED_TURNS:
                self._seen.popitem(last=False)
        agent = {"agent_id": str(record.get("agent_id") or "unknown")}
        outcome = str(record.get("outcome") or "unknown")
        self.turns.add(1, {**agent, "outcome": outcome})
        if seconds is None:
            seconds = _seconds(record.get("started"), record.get("finished"))
        if seconds is not None:
            self.turn_duration.record(seconds, {**agent, "outcome": outcome})
        usage = record.get("usage") or {}
        for kind, key in (("input", "prompt_tokens"), ("output", "completion_tokens")):
            count = int(usage.get(key) or 0)
            if count:
                self.tokens.add(count, {**agent, "kind": kind})
        if outcome == "failed":
            self.errors.add(1, {**agent, "kind": "turn"})
        for step in record.get("steps") or []:
            if step.get("kind") == "tool":
                failed = bool((step.get("result") or {}).get("is_error"))
                self.tool_calls.add(1, {**agent, "server": str(step.get("server") or ""),
                                        "tool": str(step.get("tool") or ""), "outcome": "error" if failed else "ok"})
                if failed:
                    self.errors.add(1, {**agent, "kind": "tool"})
            elif step.get("kind") == "model" and step.get("error"):
                self.errors.add(1, {**agent, "kind": "model"})
        return True

    def record_deadletter(self, kind: str, source: str, agent_id: str | None) -> None:
        self.deadletters.add(1, {"kind": kind, "source": source, "agent_id": agent_id or "none"})


def _seconds(started: Any, finished: Any) -> float | None:
    try:
        start = datetime.fromisoformat(str(started))
        end = datetime.fromisoformat(str(finished))
    except ValueError:
        return None
    return max(0.0, (end - start).total_seconds())
