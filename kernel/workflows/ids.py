"""Names derived from what they are for: run instance ids, correlation ids, event names, the caller.

* A run is the orchestration instance ``wf-<workflow address>-<suffix>``: a random suffix for API
  starts, a digest of the event id for trigger starts, the fire time for scheduled starts — so a
  redelivered trigger event or a schedule occurrence starts one run, however often it is seen.
* An agent step's attempt sends an event whose id and correlation id are
  ``<run>:<step>:<attempt>``; the agent's reply carries the correlation id back and is raised in
  the run as the external event of that name. A tool step's call id has the same shape (the
  gateway keeps one result per call id).
* A workflow calls tools as ``<namespace>.workflow:<id>`` (``workflow:<id>`` in the default
  namespace): ``:`` never occurs in an agent id, and the namespace prefix keeps the gateway's
  namespace rules working for workflows as for agents.
"""

from __future__ import annotations

import hashlib
from datetime import datetime

from kernel import namespaces as ns

RUN_PREFIX = "wf-"
SCHEDULE_PREFIX = "wf-schedule-"
#: Agent replies go ``to`` this source prefix; the kernel's outputs router raises them in the run.
SOURCE_PREFIX = "workflow/"
CALLER_MARK = "workflow:"
CANCEL_EVENT = "cancel"


def _digest(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


def run_id(workflow: str, suffix: str) -> str:
    return f"{RUN_PREFIX}{workflow}-{suffix}"


def event_run_id(workflow: str, event_id: str) -> str:
    return run_id(workflow, f"e{_digest(event_id)}")


def scheduled_run_id(workflow: str, fire_time: datetime) -> str:
    return run_id(workflow, fire_time.strftime("s%Y%m%dT%H%M%S"))


def schedule_instance_id(workflow: str, fingerprint: str) -> str:
    return f"{SCHEDULE_PREFIX}{workflow}-{fingerprint}"


def is_run(instance_id: str | None) -> bool:
    return bool(instance_id) and instance_id.startswith(RUN_PREFIX) and not instance_id.startswith(SCHEDULE_PREFIX)


def attempt_id(run: str, step: str, attempt: int) -> str:
    """The correlation (agent step) or call id (tool step) of one attempt."""
    return f"{run}:{step}:{attempt}"


def compensation_id(run: str, step: str, attempt: int = 1) -> str:
    """The correlation (agent) or call id (tool) of a compensation's attempt; the first keeps the
    name it had before compensations were retried, so a run compensating across an upgrade replays."""
    return f"{run}:{step}:undo" if attempt == 1 else f"{run}:{step}:undo:{attempt}"


def source(run: str) -> str:
    """The ``source`` of a run's events: agents reply ``to`` it."""
    return f"{SOURCE_PREFIX}{run}"


def run_of_source(value: str | None) -> str | None:
    """The run a reply is addressed to (its ``to``), or ``None`` when it is not a run's."""
    if value and value.startswith(SOURCE_PREFIX) and is_run(value[len(SOURCE_PREFIX):]):
        return value[len(SOURCE_PREFIX):]
    return None


def approval_event(step: str) -> str:
    return f"approval:{step}"


def wait_event(name: str) -> str:
    return f"event:{name}"


def caller(workflow: str) -> str:
    """The identity a workflow (by address) calls MCP tools as."""
    namespace, bare = ns.split(workflow)
    return ns.qualify(namespace, f"{CALLER_MARK}{bare}")


def workflow_of_caller(value: str) -> str | None:
    """The workflow address of a tool caller, or ``None`` when the caller is not a workflow."""
    namespace, bare = ns.split(value)
    if not bare.startswith(CALLER_MARK):
        return None
    return ns.qualify(namespace, bare[len(CALLER_MARK):])


def reference(namespace: str, name: str) -> str:
    """The address an agent or MCP server reference written in a workflow of ``namespace`` names:
    its own namespace unless qualified. The one place workflow references resolve, when configs
    load (``kernel.workflows.validation``) and when a run sends its events."""
    return ns.resolve(namespace, name)
