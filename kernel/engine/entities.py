"""Entity batches through the SDK's batch protocol.

All pending operations for one entity go to the entity function in a single call, in arrival
order; the engine never runs two batches of the same entity at once, so operations are strictly
serialized per entity. Results of calls go back to the calling orchestration as the extension
sends them: an ``EventRaised`` named by the request id, whose input holds the result (and an
``exceptionType`` when the operation failed, which fails the orchestration's task).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from azure.functions._durable_functions import EntityContext

from .indexing import FunctionSpec


def split_entity_id(entity_id: str) -> tuple[str, str]:
    """``@name@key`` -> (name, key); the name is lower-cased as the extension does."""
    if not entity_id.startswith("@") or entity_id.count("@") < 2:
        raise ValueError(f"'{entity_id}' is not an entity id of the form @name@key")
    name, _, key = entity_id[1:].partition("@")
    return name.lower(), key


def entity_id_of(name: str, key: str) -> str:
    return f"@{name.lower()}@{key}"


@dataclass
class OperationOutcome:
    request: dict[str, Any]
    is_error: bool
    result: str  # JSON text


@dataclass
class BatchOutcome:
    exists: bool
    state: str | None
    results: list[OperationOutcome]


def sdk_entity_handle(handler: Any) -> bool:
    """Whether ``handler`` is the SDK's own ``Entity.create`` handle (whose steps we can follow)."""
    return (getattr(handler, "__qualname__", "") == "Entity.create.<locals>.handle"
            and callable(getattr(handler, "entity_function", None)))


def _run_sdk_entity(handler: Any, name: str, key: str, exists: bool, state: str | None,
                    batch: list[dict[str, Any]]) -> str:
    """The steps of the SDK's ``Entity.create(fn)`` handle, given the context's parts instead of
    its JSON: the handle only parses that JSON into this same ``DurableEntityContext`` (state kept
    raw, parsed when the function reads it). Saves encoding and parsing the whole agent state
    once more per batch; the batch itself runs in the SDK's ``Entity.handle``."""
    from azure.durable_functions.entity import Entity
    from azure.durable_functions.models.DurableEntityContext import DurableEntityContext

    context = DurableEntityContext(name=name, key=key, exists=exists, state=state)
    context._state_is_raw = state is not None
    return Entity(handler.entity_function).handle(context, batch)


def run_batch(spec: FunctionSpec | None, entity_id: str, exists: bool, state: str | None,
              requests: list[dict[str, Any]]) -> BatchOutcome:
    """Run ``requests`` (``op``/``input``) as one batch; never raises for user errors."""
    name, key = split_entity_id(entity_id)
    if spec is None:
        message = json.dumps(f"The function '{name}' doesn't exist, is disabled, or is not an entity function.")
        return BatchOutcome(exists, state, [OperationOutcome(r, True, message) for r in requests])
    batch = [
        {"name": r.get("op"), "input": json.dumps(r.get("input")) if r.get("input") is not None else "null"}
        for r in requests
    ]
    try:
        handler = spec.user_function
        if sdk_entity_handle(handler):
            raw = _run_sdk_entity(handler, name, key, exists, state, batch)
        else:
            payload = json.dumps({"self": {"name": name, "key": key}, "exists": exists, "state": state, "batch": batch})
            raw = handler(**{str(spec.trigger["name"]): EntityContext(payload)})
        output = json.loads(raw)
    except Exception as exc:  # a framework-level failure: every operation of the batch fails
        message = json.dumps(f"{type(exc).__name__}: {exc}")
        return BatchOutcome(exists, state, [OperationOutcome(r, True, message) for r in requests])
    results = output.get("results") or []
    outcomes = []
    for i, request in enumerate(requests):
        item = results[i] if i < len(results) else {"isError": True, "result": json.dumps("no result")}
        outcomes.append(OperationOutcome(request, bool(item.get("isError")), str(item.get("result", "null"))))
    new_exists = bool(output.get("entityExists"))
    new_state = output.get("entityState") if new_exists else None
    return BatchOutcome(new_exists, new_state, outcomes)


def response_event_input(outcome: OperationOutcome) -> str:
    """The ``EventRaised.Input`` the SDK turns into the call's result (or failure)."""
    body: dict[str, Any] = {"result": outcome.result}
    if outcome.is_error:
        body["exceptionType"] = "EntityOperationFailed"
    return json.dumps(body)
