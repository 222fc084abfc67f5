"""The agent's durable state and the operations on it, as pure functions.

The agent entity (``entity.py``) is a thin shell over these functions so that every operation is
deterministic, testable without the SDK, and safe against the Durable SDK's gotchas: each
operation takes the current state and returns a new one (never mutating its input, because a
failed entity operation keeps in-place changes) together with a result (always one, because
``set_result`` leaks between operations of a batch).

The entity is also the agent's lock and queue: ``begin`` either grants the turn or queues the
event in the inbox; ``finish`` releases the turn and hands over the next queued event, so turns
of one agent run one at a time, in arrival order. Message ids already seen are refused, so a
redelivered message never produces a second turn.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kernel.config.models import AgentConfig, MemoryBudget
from realm_of_agents.memory import empty_memory, fit_to_budget, pin_fact, remember_turn

STATE_VERSION = 1
#: Recent event ids remembered (as short digests) for idempotency; redeliveries arrive within
#: minutes, and turn instance ids derived from message ids are the first line of defence.
PROCESSED_IDS_KEPT = 128
#: Pending events an agent holds before refusing more (the bus keeps them until accepted).
INBOX_LIMIT = 10_000
STATUSES = ("sleeping", "working", "paused", "retired")

State = dict[str, Any]
Result = dict[str, Any]


def deepcopy(state: State) -> State:
    """A deep copy of plain JSON data; a JSON round trip is several times faster than
    ``copy.deepcopy`` on entity-sized state, and the state is JSON by construction."""
    return json.loads(json.dumps(state))


class OperationError(ValueError):
    """An operation that does not apply to the agent in its current state."""


def new_state(agent_id: str) -> State:
    return {
        "v": STATE_VERSION,
        "id": agent_id,
        "status": "sleeping",
        "config": None,
        "config_version": None,
        "goals": [],
        "memory": empty_memory(),
        "counters": {"turns": 0, "declined": 0, "failed": 0, "refused": 0, "tool_calls": 0, "tokens_in": 0,
                     "tokens_out": 0},
        "inbox": [],
        "current": None,
        "processed": [],
    }


def configure(state: State, config: dict[str, Any], version: str, at: str) -> tuple[State, Result]:
    """Adopt a config version; a purpose change is remembered as a fact. Idempotent per version."""
    if state["config_version"] == version:
        return state, {"changed": False, "status": state["status"]}
    agent = AgentConfig.model_validate(config)
    new = deepcopy(state)
    budget = agent.memory
    previous = state["config"]
    if previous is not None and previous.get("purpose") != agent.purpose:
        new["memory"] = pin_fact(new["memory"], f"{at[:10]}: purpose changed to: {agent.purpose}", budget)
    new["config"] = agent.model_dump(mode="json", exclude={"schema_"})
    new["config_version"] = version
    new["goals"] = _merge_goals(state["goals"], agent, at)
    if not agent.enabled:
        new["status"] = "paused"
    elif state["status"] in ("paused", "retired") and previous is not None and not previous.get("enabled", True):
        new["status"] = "working" if new["current"] else "sleeping"
    elif state["status"] == "retired":
        new["status"] = "sleeping"
    return _fit(new), {"changed": True, "status": new["status"]}


def set_status(state: State, status: str) -> tuple[State, Result]:
    """Pause, resume or retire. Retiring keeps all state; a paused agent queues but does not run."""
    if status not in ("paused", "sleeping", "retired"):
        raise OperationError(f"cannot set status '{status}': expected paused, sleeping or retired")
    if state["status"] == "retired" and status != "retired":
        raise OperationError("a retired agent comes back only by being configured again")
    new = deepcopy(state)
    new["status"] = "working" if status == "sleeping" and state["current"] else status
    return new, {"status": new["status"]}


def context_view(state: State, event_id: str | None = None) -> Result:
    """What a turn needs of the state: everything but the queue and the idempotency digests.

    Given the turn's ``event_id`` while that event still waits in the inbox, only where it waits:
    a queued turn asks again when granted, and carrying the whole state into its history for
    nothing cost an encode, a stored copy and a parse of it per queued turn."""
    if event_id is not None and _queued(state, event_id):
        return {"id": state["id"], "status": state["status"], "queued": True, "inbox_size": len(state["inbox"])}
    view = {key: value for key, value in state.items() if key not in ("inbox", "processed")}
    view["inbox_size"] = len(state["inbox"])
    return view


def enqueue(state: State, event_id: str, sequence: int | None = None) -> tuple[State, Result]:
    """Queue ``event_id`` in broker order (by ``sequence`` when given). Does not start a turn.

    The wake function enqueues every event before it starts the event's turn orchestration, so
    the inbox holds events in the order the bus delivered them, whatever order their
    orchestrations later reach the entity in. Idempotent: a redelivered event is a duplicate.
    """
    if _seen(state, event_id) or _queued(state, event_id) or event_id == state["current"]:
        return state, {"decision": "duplicate"}
    if state["status"] == "retired":
        return state, {"decision": "refused", "reason": "agent is retired"}
    if len(state["inbox"]) >= INBOX_LIMIT:
        return state, {"decision": "refused", "reason": f"inbox holds {INBOX_LIMIT} events already"}
    inbox = list(state["inbox"])
    position = len(inbox)
    if sequence is not None:
        while position > 0 and (inbox[position - 1].get("seq") or -1) > sequence:
            position -= 1
    inbox.insert(position, {"id": event_id, "seq": sequence})
    return {**state, "inbox": inbox}, {"decision": "queued", "position": position + 1}


def begin(state: State, event_id: str, sequence: int | None = None) -> tuple[State, Result]:
    """Ask to run the turn for ``event_id``: ``start`` when it is the agent's current event (or
    the head of the inbox of an idle agent), otherwise ``queued`` (its turn is granted later by
    ``finish`` or ``release``). Processed events are ``duplicate``; a retired agent ``refused``."""
    if _seen(state, event_id):
        return state, {"decision": "duplicate"}
    if state["current"] == event_id:
        return state, {"decision": "start"}
    if state["status"] == "retired":
        return state, {"decision": "refused", "reason": "agent is retired"}
    new = state
    if not _queued(state, event_id):
        new, result = enqueue(state, event_id, sequence)
        if result["decision"] != "queued":
            return state, result
    if new["current"] is None and new["status"] == "sleeping" and new["inbox"][0]["id"] == event_id:
        return {**new, "inbox": new["inbox"][1:], "current": event_id, "status": "working"}, {"decision": "start"}
    position = next(i for i, entry in enumerate(new["inbox"]) if entry["id"] == event_id) + 1
    return new, {"decision": "queued", "position": position}


def finish(state: State, event_id: str, turn: dict[str, Any], at: str) -> tuple[State, Result]:
    """Record a finished turn, release the agent, and hand over the next queued event."""
    if state["current"] != event_id:
        if _seen(state, event_id):
            return state, {"next": None, "duplicate": True}
        raise OperationError(f"turn for event '{event_id}' is not the agent's current turn")
    budget = _budget(state)
    new = _renewed(state)
    new["memory"] = remember_turn(state["memory"], turn["digest"], budget, turn.get("summary_lines"))
    for fact in turn.get("facts", []):
        new["memory"] = pin_fact(new["memory"], fact, budget)
    counters = new["counters"] = dict(state["counters"])
    counters["turns"] += 1
    outcome = turn["digest"]["outcome"]
    if outcome in ("declined", "failed", "refused"):  # refused: a policy stopped it (states from before lack the key)
        counters[outcome] = counters.get(outcome, 0) + 1
    counters["tool_calls"] += int(turn.get("tool_calls", 0))
    counters["tokens_in"] += int(turn.get("tokens_in", 0))
    counters["tokens_out"] += int(turn.get("tokens_out", 0))
    new["goals"] = [_apply_goal_update(goal, turn.get("goal_updates", {}), at) for goal in state["goals"]]
    new["processed"] = (state["processed"] + [_digest(event_id)])[-PROCESSED_IDS_KEPT:]
    return _hand_over(_fit(new))


def _renewed(state: State) -> State:
    """A copy of ``state`` that an operation may change at its top level and in its inbox; the rest
    is shared with ``state``, so whatever else the operation changes it replaces, never mutates
    (operations never change what they were given: a failed entity operation keeps such changes).
    A full copy through JSON cost an encode and a parse of the whole state per operation."""
    return {**state, "inbox": list(state["inbox"])}


def _hand_over(state: State) -> tuple[State, Result]:
    """Release the turn and give the next queued event its turn (``state``: an operation's own copy)."""
    state["current"] = None
    if state["status"] in ("paused", "retired"):
        return state, {"next": None}
    if state["inbox"]:
        state["current"] = state["inbox"].pop(0)["id"]
        state["status"] = "working"
        return state, {"next": state["current"]}
    state["status"] = "sleeping"
    return state, {"next": None}


def skip(state: State, event_id: str) -> tuple[State, Result]:
    """Give up the current event whose turn cannot be reached (its orchestration finished or never
    started) and hand over the next one, so a lost turn never wedges the agent."""
    if state["current"] != event_id:
        return state, {"next": None}
    new = _renewed(state)
    new["processed"] = (state["processed"] + [_digest(event_id)])[-PROCESSED_IDS_KEPT:]
    return _hand_over(new)


def release_after_pause(state: State) -> tuple[State, Result]:
    """On resume, hand the next queued event to a new turn if none is running."""
    if state["status"] != "sleeping" or state["current"] is not None:
        return state, {"next": None}
    return _hand_over(_renewed(state))


def remember(state: State, fact: str, at: str) -> tuple[State, Result]:
    """Pin a fact outside a turn (the API, or the context MCP server used from outside)."""
    if not isinstance(fact, str) or not fact.strip():
        raise OperationError("a fact must be non-empty text")
    new = deepcopy(state)
    new["memory"] = pin_fact(new["memory"], fact, _budget(state))
    return _fit(new), {"facts": len(new["memory"]["facts"])}


def update_goal(state: State, goal_id: str, change: dict[str, Any], at: str) -> tuple[State, Result]:
    """Add a goal, record progress, complete or abandon one."""
    new = deepcopy(state)
    existing = [g for g in new["goals"] if g["id"] == goal_id]
    if change.get("action") == "add":
        if existing:
            raise OperationError(f"goal '{goal_id}' exists already")
        new["goals"].append(_goal(goal_id, str(change.get("description", "")), int(change.get("priority", 3)), at))
        return _fit(new), {"goal": new["goals"][-1]}
    if not existing:
        raise OperationError(f"no goal '{goal_id}'")
    updated = _apply_goal_update(existing[0], {goal_id: change}, at)
    new["goals"] = [updated if g["id"] == goal_id else g for g in new["goals"]]
    return _fit(new), {"goal": updated}


def _merge_goals(goals: list[dict[str, Any]], agent: AgentConfig, at: str) -> list[dict[str, Any]]:
    """Config goals are added when new; goals the agent already tracks keep their progress."""
    known = {goal["id"] for goal in goals}
    merged = [dict(goal) for goal in goals]
    for goal in agent.goals:
        if goal.id not in known:
            merged.append(_goal(goal.id, goal.description, goal.priority, at, goal.target))
    return merged


def _goal(goal_id: str, description: str, priority: int, at: str, target: str | None = None) -> dict[str, Any]:
    return {
        "id": goal_id,
        "description": description,
        "priority": priority,
        "target": target,
        "status": "active",
        "progress": 0,
        "note": None,
        "updated": at,
    }


def _apply_goal_update(goal: dict[str, Any], updates: dict[str, Any], at: str) -> dict[str, Any]:
    change = updates.get(goal["id"])
    if not change:
        return goal
    action = change.get("action", "progress")
    if action not in ("progress", "complete", "abandon", "touch"):
        raise OperationError(f"unknown goal action '{action}': expected add, progress, complete, abandon or touch")
    updated = dict(goal, updated=at, note=change.get("note", goal.get("note")))
    if action == "touch":  # a turn worked on the goal without reporting progress
        updated["turns"] = int(goal.get("turns", 0)) + 1
        updated["last_turn"] = change.get("turn_id")
    elif action == "progress":
        updated["progress"] = max(0, min(100, int(change.get("progress", goal["progress"]))))
    elif action == "complete":
        updated.update(status="completed", progress=100)
    else:
        updated["status"] = "abandoned"
    return updated


def _digest(event_id: str) -> str:
    return hashlib.sha256(event_id.encode()).hexdigest()[:16]


def _seen(state: State, event_id: str) -> bool:
    return _digest(event_id) in state["processed"]


def _queued(state: State, event_id: str) -> bool:
    return any(entry["id"] == event_id for entry in state["inbox"])


def _budget(state: State) -> MemoryBudget:
    config = state.get("config") or {}
    return MemoryBudget.model_validate(config.get("memory", {}))


def _fit(state: State) -> State:
    """Keep the state within the memory budget. The inbox is a transient queue bounded by
    INBOX_LIMIT on its own, so it does not count against the memory budget."""
    fitted = fit_to_budget({**state, "inbox": []}, _budget(state))
    fitted["inbox"] = state["inbox"]
    return fitted
