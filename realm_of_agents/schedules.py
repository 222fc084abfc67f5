"""Schedules from config wake agents through durable timers.

One eternal orchestration per (agent, schedule): sleep on a durable timer until the next NCRONTAB
occurrence, send the scheduled event to the agent on the events topic, continue as new. A sleeping
timer costs nothing; a restart resumes it. The event id derives from the agent, the schedule and
the occurrence, so an occurrence never wakes the agent twice.

The instance id carries a fingerprint of the schedule's definition: changing a schedule in config
starts a new instance and the config sync terminates the old one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Generator

import azure.durable_functions as df

from kernel import ncrontab
from kernel.config.models import AgentConfig, Schedule
from kernel.namespaces import address_of
from realm_of_agents import ids
from realm_of_agents.turn import STORE_RETRY

ORCHESTRATOR = "agent_schedule"
SEND_EVENT = "agent_send_event"


def schedule_input(agent: AgentConfig, schedule: Schedule) -> dict[str, Any]:
    definition = schedule.model_dump(mode="json")
    fingerprint = hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:8]
    return {"agent_id": address_of(agent), "fingerprint": fingerprint, **definition}


def schedule_instance(request: dict[str, Any]) -> str:
    return f"{ids.schedule_instance_id(request['agent_id'], request['name'])}-{request['fingerprint']}"


def schedule_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, None]:
    request = context.get_input()
    fire_at = ncrontab.next_fire(request["cron"], context.current_utc_datetime)
    context.set_custom_status({"next": fire_at.isoformat()})
    yield context.create_timer(fire_at)
    when = fire_at.isoformat()
    envelope = {
        "id": ids.scheduled_event_id(request["agent_id"], request["name"], when),
        "type": request["event_type"],
        "source": f"schedule/{request['name']}",
        "to": request["agent_id"],
        "time": when,
        "data": request.get("data") or {},
    }
    yield context.call_activity_with_retry(SEND_EVENT, STORE_RETRY, {"envelope": envelope})
    context.continue_as_new(request)
