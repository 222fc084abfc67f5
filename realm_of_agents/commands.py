"""Control orchestrations: configure, pause, resume, retire, remember, update a goal.

Entity operations that change an agent go through a short orchestration rather than a bare
signal, for two reasons: the caller (HTTP API, config sync) gets the operation's result or its
error, and after the change the orchestration asks the entity to hand over its next queued event
(``release``) — resuming a paused agent must start the turn that waited.
"""

from __future__ import annotations

from typing import Any, Generator

import azure.durable_functions as df

from realm_of_agents.entity import ENTITY_NAME
from realm_of_agents.turn import hand_over

ORCHESTRATOR = "agent_command"
OPERATIONS = ("configure", "pause", "resume", "retire", "remember", "update_goal")


def command_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    request = context.get_input()
    agent_id, operation = request["agent_id"], request["operation"]
    if operation not in OPERATIONS:
        raise ValueError(f"unknown command '{operation}': expected one of {', '.join(OPERATIONS)}")
    entity = df.EntityId(ENTITY_NAME, agent_id)
    payload = dict(request.get("payload") or {})
    payload.setdefault("at", context.current_utc_datetime.isoformat())
    result = yield context.call_entity(entity, operation, payload)
    released = yield context.call_entity(entity, "release", {"after": operation})
    yield from hand_over(context, agent_id, released.get("next"))
    return {"agent_id": agent_id, "operation": operation, "result": result}
