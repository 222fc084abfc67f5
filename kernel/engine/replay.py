"""Running an orchestrator through the Durable SDK's replay, and keeping that replay between episodes.

Every episode, the Durable extension sends the SDK an instance's whole history: the SDK builds a
fresh context, starts the orchestrator function again and replays every event into it, so an
episode costs time proportional to the history, and a turn of n episodes costs O(n²).

A :class:`ReplaySession` keeps what the SDK's replay built (its ``TaskOrchestrationExecutor``,
``DurableOrchestrationContext`` and the suspended generator) after an episode. The next episode
feeds it only the events it has not processed yet, in history order, through the same
``process_event`` the replay loop calls, and reads the state the same way. Processing events
a, b, c in one replay or a, b in one call and c in the next gives the same executor state, so the
actions, output and custom status are the ones a full replay would produce; determinism is still
checked against the recorded actions on every episode. This is the in-process equivalent of the
Durable extension's *extended sessions*.

A session is only a cache: nothing in it is durable. It is dropped when the instance leaves memory
(a restart, a failed tick, eviction from the engine's bounded cache) and the next episode replays
the whole history as before. Functions not built by the SDK's ``Orchestrator.create`` always
replay in full.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from azure.functions._durable_functions import OrchestrationContext

OUT_OF_PROC_MARKER = "\n\n$OutOfProcData$:"


def session_capable(handler: Callable[..., Any]) -> bool:
    """Whether ``handler`` is the SDK's own ``Orchestrator.create`` handle (whose steps we can follow)."""
    return (getattr(handler, "__qualname__", "") == "Orchestrator.create.<locals>.handle"
            and callable(getattr(handler, "orchestrator_function", None)))


class ReplaySession:
    """The SDK's replay state for one execution of one instance, carried from episode to episode."""

    def __init__(self, execution_id: str, executor: Any, context: Any, seen: int) -> None:
        self.execution_id = execution_id
        self.executor = executor
        self.context = context
        self.seen = seen  # history events the executor has processed, from the start of the execution
        #: History events recorded after ``seen`` (the engine's own dicts, ``IsPlayed`` set), so the
        #: next ``resume`` need not parse back the JSON they were stored as.
        self.pending: list[dict[str, Any]] = []

    @classmethod
    def start(cls, handler: Callable[..., Any], execution_id: str, body: str, events: int) -> tuple[ReplaySession, str]:
        """A full replay of ``body`` (the context JSON, ``events`` history events) that keeps its state.

        The steps are those of the SDK's ``Orchestrator.create(fn)`` handle; a failure the SDK
        reports (raised with ``$OutOfProcData$``) propagates as it would from the handle.
        """
        from azure.durable_functions.models.DurableOrchestrationContext import (
            DurableOrchestrationContext,
        )
        from azure.durable_functions.orchestrator import Orchestrator

        context = DurableOrchestrationContext.from_json(body)
        context._input_expected_type = getattr(handler, "_df_input_type", None)
        orchestrator = Orchestrator(handler.orchestrator_function)  # type: ignore[attr-defined]
        session = cls(execution_id, orchestrator.task_orchestration_executor, context, events)
        return session, orchestrator.handle(context)

    def resume(self, played: list[str], new: list[dict[str, Any]]) -> dict[str, Any] | str:
        """Process the history events recorded since the last call (``played``, as stored JSON;
        ``pending`` holds the same events as dicts when it covers them all) and this episode's new
        events (``new``, dicts with ``IsPlayed`` false), then return the orchestrator state, as a
        replay would (see ``orchestrator_state``)."""
        from azure.durable_functions.models.history.HistoryEvent import HistoryEvent

        recorded = self.pending if len(self.pending) == len(played) else [json.loads(raw) for raw in played]
        self.pending = []
        events = [HistoryEvent(**fields) for fields in recorded + new]
        self.context.histories.extend(events)
        executor = self.executor
        for index, event in enumerate(events):
            executor._is_processing_new_events = index >= len(recorded)
            executor.process_event(event)
            if executor.has_execution_completed:
                break
        self.seen += len(events)
        return orchestrator_state(executor)


def orchestrator_state(executor: Any) -> dict[str, Any] | str:
    """The executor's state as the SDK's ``get_orchestrator_state_str`` builds it, as the dict it
    would encode: the engine reads that dict, so encoding the whole action list (every activity
    input of the run so far) to parse it back is skipped. The SDK's method checks that an output
    serializes (this does too); when the orchestrator failed, or its output does not serialize,
    the SDK's own method runs (it reports the failure by raising) and its JSON is returned."""
    if executor.exception is not None:
        return str(executor.get_orchestrator_state_str())
    output = executor.output
    if output is not None:
        try:  # the SDK's own check: an output that does not serialize fails the orchestration
            json.dumps(output)
        except Exception:
            return str(executor.get_orchestrator_state_str())
    from azure.durable_functions.models.OrchestratorState import OrchestratorState

    state = OrchestratorState(is_done=executor.orchestration_invocation_succeeded, actions=executor.context._actions,
                              output=output, replay_schema=executor.context._replay_schema, error=None,
                              custom_status=executor.context.custom_status)
    return state.to_json()


def run_handler(handler: Callable[..., Any], trigger_name: str, body: str) -> Any:
    """A plain full replay: call the registered handler with the context, as the worker does."""
    return handler(**{trigger_name: OrchestrationContext(body)})


def reported_failure(error: BaseException) -> bool:
    """Whether ``error`` is the SDK's report of an orchestrator failure (not an SDK or engine fault)."""
    return OUT_OF_PROC_MARKER in str(error)
