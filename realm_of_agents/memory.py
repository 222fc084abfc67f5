"""Bounded hot memory: a window of recent turns, an extractive rolling summary, pinned facts.

An agent lives for years, so its entity state must stay O(1): every turn in full goes to the
archive (storage), and the entity keeps only what fits the agent's memory budget. Turns leave the
window oldest first into the summary; the summary drops its oldest lines when it outgrows its
limit, counting what it dropped, so state size after 100,000 turns equals that after 10.

The summary is extractive (one line per turn, taken from the turn itself), which needs no model;
when a model is configured, the turn asks it to write the line for the turn leaving the window.
Memory is plain JSON-ready data because it lives inside Durable entity state.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, TypedDict

from kernel.config.models import MemoryBudget

#: Longest text kept for one turn in the window; the archive has it in full.
WINDOW_TEXT_CHARS = 280
SUMMARY_LINE_CHARS = 160


class TurnDigest(TypedDict):
    turn_id: str
    time: str
    event_type: str
    outcome: str  # replied | declined | failed
    text: str


class Memory(TypedDict):
    window: list[TurnDigest]
    summary: list[str]
    summarized_turns: int
    dropped_summary_lines: int
    facts: list[str]


def empty_memory() -> Memory:
    return {"window": [], "summary": [], "summarized_turns": 0, "dropped_summary_lines": 0, "facts": []}


def digest(turn_id: str, time: str, event_type: str, outcome: str, text: str) -> TurnDigest:
    """What the window keeps of a turn: enough to recall it, with a pointer to the archive."""
    return {
        "turn_id": turn_id,
        "time": time,
        "event_type": event_type,
        "outcome": outcome,
        "text": _clip(text, WINDOW_TEXT_CHARS),
    }


def remember_turn(memory: Memory, turn: TurnDigest, budget: MemoryBudget,
                  written: Mapping[str, str] | None = None) -> Memory:
    """A new memory with ``turn`` in the window and the oldest turns folded into the summary.

    ``written`` maps turn ids to summary lines a model wrote for them; turns without one get the
    extractive line.
    """
    window = [*memory["window"], turn]
    summary = list(memory["summary"])
    summarized = memory["summarized_turns"]
    while len(window) > budget.window_turns:
        oldest = window.pop(0)
        line = (written or {}).get(oldest["turn_id"])
        summary.append(_clip(line, SUMMARY_LINE_CHARS) if line else summary_line(oldest))
        summarized += 1
    summary, dropped = _trim_summary(summary, budget.summary_max_chars)
    return {
        "window": window,
        "summary": summary,
        "summarized_turns": summarized,
        "dropped_summary_lines": memory["dropped_summary_lines"] + dropped,
        "facts": list(memory["facts"]),
    }


def pin_fact(memory: Memory, fact: str, budget: MemoryBudget) -> Memory:
    """Pin a fact; the oldest facts give way when the limit is reached. Duplicates are kept once."""
    fact = _clip(fact.strip(), SUMMARY_LINE_CHARS * 2)
    facts = [f for f in memory["facts"] if f != fact] + ([fact] if fact else [])
    if budget.pinned_facts_max == 0:
        facts = []
    elif len(facts) > budget.pinned_facts_max:
        facts = facts[-budget.pinned_facts_max :]
    return {**memory, "facts": facts}


def summary_line(turn: TurnDigest) -> str:
    first_sentence = turn["text"].split(". ")[0]
    return _clip(f"{turn['time'][:16]} {turn['event_type']} ({turn['outcome']}): {first_sentence}", SUMMARY_LINE_CHARS)


def fit_to_budget(state: dict[str, Any], budget: MemoryBudget) -> dict[str, Any]:
    """Shrink ``state['memory']`` until the whole state serializes within the byte budget.

    Summary lines go first (oldest first), then window turns (oldest first, into nothing: they
    are archived), then facts. Raises if the state cannot fit even with empty memory, which means
    the budget is too small for the agent's config itself.
    """
    memory: Memory = state["memory"]
    memory = {**memory, "window": list(memory["window"]), "summary": list(memory["summary"]), "facts": list(memory["facts"])}
    candidate = {**state, "memory": memory}
    while size_of(candidate) > budget.max_state_bytes:
        if memory["summary"]:
            memory["summary"].pop(0)
            memory["dropped_summary_lines"] += 1
        elif len(memory["window"]) > 1:
            memory["window"].pop(0)
            memory["summarized_turns"] += 1
            memory["dropped_summary_lines"] += 1
        elif memory["facts"]:
            memory["facts"].pop(0)
        else:
            raise ValueError(
                f"agent state needs {size_of(candidate)} bytes without any memory; "
                f"memory.max_state_bytes is {budget.max_state_bytes}"
            )
    return candidate


def size_of(value: Any) -> int:
    """Bytes of the compact JSON that Durable stores."""
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


def _trim_summary(lines: list[str], max_chars: int) -> tuple[list[str], int]:
    dropped = 0
    total = sum(len(line) + 1 for line in lines)
    while lines and total > max_chars:
        total -= len(lines.pop(0)) + 1
        dropped += 1
    return lines, dropped


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
