"""Runs started by events: broadcast events on agent-events whose type a workflow's trigger names.

The kernel's ``workflows`` subscription on agent-events admits broadcast events (no ``to``) of the
types workflows trigger on (``kernel.topology``). Each such event starts one run of each matching
enabled workflow of the event's namespace, or of another namespace that a route of the event's
namespace names under ``workflows`` (``kernel.workflows.reach``); the run id derives from the workflow and the event id,
so a redelivered event starts nothing new. The event's data is the run's input; an input the
workflow's schema refuses, or a malformed message, is kept in the dead-letter store with the reason.
"""

from __future__ import annotations

import fnmatch
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from kernel import namespaces as ns
from kernel.config.loader import ConfigSet
from kernel.deadletters import DeadLetterStore
from kernel.messages import Envelope, describe_invalid
from kernel.workflows import ids, reach
from kernel.workflows.models import WorkflowConfig
from kernel.workflows.runs import InvalidInput, RunIndex, start

log = logging.getLogger("aos.workflows.triggers")
SOURCE = "agent-events/workflows"


@dataclass
class TriggerReport:
    started: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)


def triggered(workflow: WorkflowConfig, event_type: str) -> bool:
    return bool(workflow.enabled and workflow.trigger
                and any(fnmatch.fnmatchcase(event_type, pattern) for pattern in workflow.trigger.events))


async def start_from_events(bodies: list[tuple[bytes, str | None]], client: Any, configs: ConfigSet,
                            runs: RunIndex, deadletters: DeadLetterStore) -> TriggerReport:
    report = TriggerReport()
    for body, message_id in bodies:
        try:
            envelope = Envelope.from_json(body)
        except (ValidationError, ValueError) as error:
            reason = f"malformed envelope: {describe_invalid(error)}"
            report.dead_lettered.append(await deadletters.record(
                kind="malformed", reason=reason, body=body, source=SOURCE, message_id=message_id))
            continue
        if envelope.to:
            continue  # addressed to an agent: not a trigger
        origin = ns.event_namespace(envelope, configs.agents)
        for address, workflow in sorted(configs.workflows.items()):
            if not triggered(workflow, envelope.type) \
                    or reach.refusal(configs.namespaces, origin, "workflows", address) is not None:
                continue
            run_id = ids.event_run_id(address, envelope.id)
            try:
                started = await start(client, runs, configs, address, envelope.data if envelope.data is not None else {},
                                      run_id=run_id, trigger={"kind": "event", "event_id": envelope.id,
                                                              "type": envelope.type, "source": envelope.source})
            except InvalidInput as error:
                reason = f"event '{envelope.id}' ({envelope.type}) cannot start workflow '{address}': {error}"
                log.warning("%s", reason)
                report.dead_lettered.append(await deadletters.record(
                    kind="workflow-input", reason=reason, body=json.dumps(envelope.model_dump(mode="json")).encode(),
                    source=SOURCE, message_id=f"{envelope.id}:{address}"))
                continue
            (report.started if started else report.existing).append(run_id)
    return report
