"""The agent entity: one Durable Entity per agent, key = agent id.

A thin shell over ``agent_state``: it reads the state, dispatches the operation to a pure
function, and writes the new state back only when the operation succeeded. It always sets a
result (the SDK leaks the previous operation's result otherwise) and never mutates the state
object it read (the SDK keeps in-place changes of a failed operation). Inputs are objects,
because the SDK's client drops falsy inputs such as ``{}`` or ``0``.
"""

from __future__ import annotations

from typing import Any, Callable

from realm_of_agents import agent_state
from realm_of_agents.agent_state import OperationError, Result, State

ENTITY_NAME = "agent"

Operation = Callable[[State, dict[str, Any]], tuple[State, Result]]

OPERATIONS: dict[str, Operation] = {
    "configure": lambda s, i: agent_state.configure(s, i["config"], i["version"], i["at"]),
    "pause": lambda s, i: agent_state.set_status(s, "paused"),
    "resume": lambda s, i: agent_state.set_status(s, "sleeping"),
    "retire": lambda s, i: agent_state.set_status(s, "retired"),
    "enqueue": lambda s, i: agent_state.enqueue(s, i["event_id"], i.get("seq")),
    "begin": lambda s, i: agent_state.begin(s, i["event_id"], i.get("seq")),
    "finish": lambda s, i: agent_state.finish(s, i["event_id"], i["turn"], i["at"]),
    "release": lambda s, i: agent_state.release_after_pause(s),
    "skip": lambda s, i: agent_state.skip(s, i["event_id"]),
    "remember": lambda s, i: agent_state.remember(s, i["fact"], i["at"]),
    "update_goal": lambda s, i: agent_state.update_goal(s, i["goal_id"], i["change"], i["at"]),
    "get": lambda s, i: (s, s),
    "context": lambda s, i: (s, agent_state.context_view(s, i.get("event_id"))),
}


def apply(operation: str, state: State | None, agent_id: str, payload: Any) -> tuple[State, Result]:
    """Run one operation; raises OperationError naming what was wrong."""
    handler = OPERATIONS.get(operation)
    if handler is None:
        raise OperationError(f"unknown agent operation '{operation}': expected one of {', '.join(OPERATIONS)}")
    if payload is not None and not isinstance(payload, dict):
        raise OperationError(f"operation '{operation}' takes an object, got {type(payload).__name__}")
    current = state if state is not None else agent_state.new_state(agent_id)
    try:
        return handler(current, payload or {})
    except KeyError as missing:
        raise OperationError(f"operation '{operation}' needs field {missing}") from None


def agent_entity(context: Any) -> None:
    """The entity function body (``context`` is a DurableEntityContext)."""
    state = context.get_state(lambda: None)
    new_state, result = apply(context.operation_name, state, context.entity_key, context.get_input())
    context.set_state(new_state)
    context.set_result(result)
