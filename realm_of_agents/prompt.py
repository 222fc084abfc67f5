"""What the model is told at the start of a turn: who the agent is, what it remembers, the event.

Pure and deterministic (it runs inside the turn orchestrator): the same state and event always
give the same messages. Messages are plain dicts in the shape of ``kernel.inference.port``'s
``ChatMessage`` because they travel through Durable history.
"""

from __future__ import annotations

import json
from typing import Any

MAX_EVENT_CHARS = 8000


def system_prompt(state: dict[str, Any]) -> str:
    config = state["config"]
    lines = [
        f"You are {config['display_name']} (agent id '{config['id']}'), a long-lived agent on the AOS platform.",
        f"Purpose: {config['purpose']}",
    ]
    scope = config.get("scope") or {}
    if scope.get("in_scope"):
        lines.append("In scope: " + "; ".join(scope["in_scope"]))
    if scope.get("out_of_scope"):
        lines.append("Out of scope (decline these, saying why): " + "; ".join(scope["out_of_scope"]))
    if config.get("success_criteria"):
        lines.append("Success criteria: " + "; ".join(config["success_criteria"]))
    active = [g for g in state.get("goals", []) if g.get("status") == "active"]
    if active:
        lines.append("Active goals:")
        lines += [f"- {g['id']} (priority {g['priority']}, progress {g['progress']}%): {g['description']}" for g in active]
    memory = state.get("memory") or {}
    if memory.get("facts"):
        lines.append("Facts you pinned:")
        lines += [f"- {fact}" for fact in memory["facts"]]
    if memory.get("summary"):
        lines.append("Summary of older turns:")
        lines += [f"- {line}" for line in memory["summary"][-20:]]
    if memory.get("window"):
        lines.append("Recent turns:")
        lines += [f"- {t['time'][:16]} {t['event_type']} ({t['outcome']}): {t['text']}" for t in memory["window"]]
    lines.append(
        "Use your tools when they help; the 'context' tools search your full memory, pin facts, update goals "
        "and send events to other agents. Answer with a short decision and its rationale."
    )
    return "\n".join(lines)


def event_message(event: dict[str, Any]) -> str:
    header = f"Event '{event['type']}' from '{event['source']}'"
    if event.get("subject"):
        header += f" about '{event['subject']}'"
    data = json.dumps(event.get("data"), ensure_ascii=False, sort_keys=True)
    if len(data) > MAX_EVENT_CHARS:
        data = data[:MAX_EVENT_CHARS] + " …(truncated; the full event is in the archive)"
    return f"{header}:\n{data}"


def initial_messages(state: dict[str, Any], event: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": system_prompt(state)},
        {"role": "user", "content": event_message(event)},
    ]
