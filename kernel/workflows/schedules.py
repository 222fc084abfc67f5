"""Scheduled workflows: one eternal orchestration per (workflow, schedule) on durable timers.

It sleeps until the next NCRONTAB occurrence, starts that occurrence's run (an activity; the run
id derives from the workflow and the fire time, so an occurrence starts one run) and continues
as new. A sleeping timer costs nothing, and an occurrence that fell due while the platform was
down fires once on restart. The instance id carries a fingerprint of the schedule: when the
schedule changes or goes, the old orchestration finds at its next occurrence that it is no longer
the workflow's and ends, and the sync (at start, every five minutes, ``POST /api/workflows/sync``)
starts the new one.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Generator
from typing import Any

import azure.durable_functions as df

from kernel import ncrontab
from kernel.config.loader import ConfigSet
from kernel.workflows import ids
from kernel.workflows.models import WorkflowConfig

ORCHESTRATOR = "workflow_schedule"
FIRE = "workflow_schedule_fire"
FIRE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=2000, max_number_of_attempts=5)


def fingerprint(workflow: WorkflowConfig) -> str:
    trigger = workflow.trigger.model_dump(mode="json") if workflow.trigger else None
    return hashlib.sha256(json.dumps(trigger, sort_keys=True).encode()).hexdigest()[:10]


def schedule_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, None]:
    request = context.get_input()
    fire_at = ncrontab.next_fire(request["cron"], context.current_utc_datetime)
    context.set_custom_status({"workflow": request["workflow"], "next": fire_at.isoformat()})
    yield context.create_timer(fire_at)
    current = yield context.call_activity_with_retry(FIRE, FIRE_RETRY, {**request, "fire_time": fire_at.isoformat()})
    if current:
        context.continue_as_new(request)


async def sync(client: Any, configs: ConfigSet) -> list[str]:
    """Start the schedule orchestration of every enabled scheduled workflow that has none running."""
    started = []
    for address, workflow in sorted(configs.workflows.items()):
        if not workflow.enabled or workflow.trigger is None or workflow.trigger.schedule is None:
            continue
        request = {"workflow": address, "cron": workflow.trigger.schedule, "fingerprint": fingerprint(workflow)}
        instance = ids.schedule_instance_id(address, request["fingerprint"])
        status = await client.get_status(instance)
        state = getattr(getattr(status, "runtime_status", None), "value", None)
        if state in ("Running", "Pending", "ContinuedAsNew", "Suspended"):
            continue
        try:
            await client.start_new(ORCHESTRATOR, instance, request)
        except Exception as error:
            if "already exists" not in str(error):
                raise
            continue
        started.append(instance)
    return started
