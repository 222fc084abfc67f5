"""Entity batches through the SDK's batch protocol.

All pending operations for one entity go to the entity function in a single call, in arrival
order; the engine never runs two batches of the same entity at once, so operations are strictly
serialized per entity. Results of calls go back to the calling orchestration as the extension
sends them: an ``EventRaised`` named by the request id, whose input holds the result (and an
``exceptionType`` when the operation failed, which fails the orchestration's task).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from azure.functions._durable_functions import EntityContext

from .indexing import FunctionSpec
from .records import dumps


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


#: No live state object: the state is still the stored JSON.
MISSING = object()


class ParsedStates:
    """The last state each recently run entity ended a batch with, as the live object its function
    left, beside the JSON it was stored as. The next batch of that entity starts from the object
    when the stored JSON is still exactly that text, instead of parsing 10+ KB of agent state
    again. Bounded (least recently used first out) and only a cache: an entry is taken out while
    its batch runs and put back only when the batch succeeded, so a failed batch or a rolled-back
    tick (the stored text then differs) never reuses a state that was not saved."""

    def __init__(self, limit: int = 256) -> None:
        self.limit = max(0, limit)
        self._states: OrderedDict[str, tuple[str, Any]] = OrderedDict()

    def take(self, entity_id: str, stored: str | None) -> tuple[bool, Any]:
        """(True, object) when the entry for ``entity_id`` was made from ``stored``; (False, None) else."""
        entry = self._states.pop(entity_id, None)
        if entry is None or stored is None or entry[0] != stored:
            return False, None
        return True, entry[1]

    def put(self, entity_id: str, stored: str, state: Any) -> None:
        if not self.limit:
            return
        self._states[entity_id] = (stored, state)
        while len(self._states) > self.limit:
            self._states.popitem(last=False)

    def clear(self) -> None:
        self._states.clear()

    def __len__(self) -> int:
        return len(self._states)


def sdk_entity_handle(handler: Any) -> bool:
    """Whether ``handler`` is the SDK's own ``Entity.create`` handle (whose steps we can follow)."""
    return (getattr(handler, "__qualname__", "") == "Entity.create.<locals>.handle"
            and callable(getattr(handler, "entity_function", None)))


def _run_sdk_entity(handler: Any, name: str, key: str, exists: bool, state: str | None,
                    batch: list[dict[str, Any]], parsed: tuple[bool, Any]) -> tuple[bool, str | None, Any, list[tuple[bool, str]]]:
    """The steps of the SDK's ``Entity.create(fn)`` handle and ``Entity.handle`` batch loop, given
    the context's parts instead of its JSON and returning the parts instead of the response JSON:
    the same ``DurableEntityContext``, operations run in order on it, an exception makes that
    operation's result its text (``is_error``), each result and the final state encoded with the
    SDK's ``df_dumps`` after the last operation. What this saves per batch is parsing the state
    (when ``parsed`` holds it), encoding the response with the state nested in it as a string, and
    parsing that back.
    Returns (exists, state JSON, live state object or ``MISSING`` when it is still raw, results)."""
    from azure.durable_functions.entity import InternalEntityException
    from azure.durable_functions.models.DurableEntityContext import DurableEntityContext
    from azure.durable_functions.models.utils.df_serialization import df_dumps

    context = DurableEntityContext(name=name, key=key, exists=exists, state=state)
    have, live = parsed
    if have:
        context._state, context._state_is_raw = live, False
    else:
        context._state_is_raw = state is not None
    function = handler.entity_function
    results: list[tuple[bool, Any]] = []
    for operation in batch:
        is_error = False
        try:
            if operation["name"] is None:
                raise InternalEntityException("Durable Functions Internal Error:"
                                              "Entity operation was missing a name field")
            context._operation = operation["name"]
            context._input = operation["input"]
            function(context)
            result = context._result  # as in the SDK, an operation that sets none repeats the last one's
        except InternalEntityException:
            raise
        except Exception as error:
            is_error, result = True, str(error)
        results.append((is_error, result))
    encoded = [(is_error, df_dumps(result)) for is_error, result in results]  # at the end, as the SDK does
    if context._state_is_raw:
        return context._exists, context._state, MISSING, encoded
    return context._exists, df_dumps(context._state), context._state, encoded


def run_batch(spec: FunctionSpec | None, entity_id: str, exists: bool, state: str | None,
              requests: list[dict[str, Any]], states: ParsedStates | None = None) -> BatchOutcome:
    """Run ``requests`` (``op``/``input``) as one batch; never raises for user errors. With
    ``states``, an SDK entity starts from the state object its last batch left (when the stored
    ``state`` is what that batch saved) and leaves its new one there."""
    name, key = split_entity_id(entity_id)
    if spec is None:
        message = json.dumps(f"The function '{name}' doesn't exist, is disabled, or is not an entity function.")
        return BatchOutcome(exists, state, [OperationOutcome(r, True, message) for r in requests])
    batch = [
        {"name": r.get("op"), "input": json.dumps(r.get("input")) if r.get("input") is not None else "null"}
        for r in requests
    ]
    handler = spec.user_function
    try:
        if sdk_entity_handle(handler):
            parsed = states.take(entity_id, state) if states is not None else (False, None)
            new_exists, new_state, live, done = _run_sdk_entity(handler, name, key, exists, state, batch, parsed)
            new_state = new_state if new_exists else None
            if states is not None and new_state is not None and live is not MISSING:
                states.put(entity_id, new_state, live)
            outcomes = [OperationOutcome(r, is_error, result) for r, (is_error, result) in zip(requests, done, strict=True)]
            return BatchOutcome(new_exists, new_state, outcomes)
        payload = json.dumps({"self": {"name": name, "key": key}, "exists": exists, "state": state, "batch": batch})
        output = json.loads(handler(**{str(spec.trigger["name"]): EntityContext(payload)}))
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
    return dumps(body)
