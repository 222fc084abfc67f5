"""Durable Task history events, in the PascalCase JSON the SDK's replay engine reads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from .clock import format_timestamp
from .records import dumps

EXECUTION_STARTED = 0
EXECUTION_COMPLETED = 1
EXECUTION_FAILED = 2
EXECUTION_TERMINATED = 3
TASK_SCHEDULED = 4
TASK_COMPLETED = 5
TASK_FAILED = 6
SUB_ORCHESTRATION_CREATED = 7
SUB_ORCHESTRATION_COMPLETED = 8
SUB_ORCHESTRATION_FAILED = 9
TIMER_CREATED = 10
TIMER_FIRED = 11
ORCHESTRATOR_STARTED = 12
ORCHESTRATOR_COMPLETED = 13
EVENT_SENT = 14
EVENT_RAISED = 15
CONTINUE_AS_NEW = 16
EXECUTION_SUSPENDED = 19
EXECUTION_RESUMED = 20

NAMES = {
    0: "ExecutionStarted", 1: "ExecutionCompleted", 2: "ExecutionFailed", 3: "ExecutionTerminated",
    4: "TaskScheduled", 5: "TaskCompleted", 6: "TaskFailed", 7: "SubOrchestrationInstanceCreated",
    8: "SubOrchestrationInstanceCompleted", 9: "SubOrchestrationInstanceFailed", 10: "TimerCreated",
    11: "TimerFired", 12: "OrchestratorStarted", 13: "OrchestratorCompleted", 14: "EventSent",
    15: "EventRaised", 16: "ContinueAsNew", 19: "ExecutionSuspended", 20: "ExecutionResumed",
}


def event(event_type: int, when: datetime, event_id: int = -1, **fields: Any) -> dict[str, Any]:
    """One history event; ``IsPlayed`` is filled in when the history is sent to the SDK."""
    body: dict[str, Any] = {"EventType": event_type, "EventId": event_id, "Timestamp": format_timestamp(when)}
    body.update(fields)
    return body


def marked(ev: dict[str, Any], played: bool) -> dict[str, Any]:
    """The event as the SDK reads it, ``IsPlayed`` set (old events are played, this episode's are not)."""
    return {**ev, "IsPlayed": played}


def encode(ev: dict[str, Any], played: bool) -> str:
    """The event's JSON with ``IsPlayed`` set."""
    return dumps(marked(ev, played))
