"""Wake: turn each event on the agent-events topic into turns of the agents it is for.

For every message of a batch (in broker order):

1. parse the envelope; a malformed one goes to the dead-letter store with the reason;
2. route it (``routing.route``: ``to`` is an agent's address, broadcasts stay in their
   namespace unless routed); an event for an unknown agent goes to the dead-letter store;
3. for each recipient whose turn for the event (instance id derived from the event id) does not
   exist yet, enqueue the event in the agent entity (so the inbox keeps broker order), then start
   that turn; a redelivered message queues and starts nothing new.

A transient failure (the Durable client unreachable) raises, so the batch is redelivered; every
step above is idempotent, so the redelivery repeats nothing that had happened.

Each message is handled in an ``agent.wake`` span, a child of the sender's span (the envelope's
traceparent); the event handed to each turn carries this span's traceparent, so the turn's span
(``kernel.telemetry.turns``) is its child.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import azure.durable_functions as df
from opentelemetry.trace import Span, SpanKind
from pydantic import ValidationError

from kernel.config.loader import ConfigSet
from kernel.messages import Envelope, describe_invalid
from kernel.telemetry.spans import WAKE, clean, fail, messaging, span, stamp
from kernel.topology import AGENT_EVENTS
from realm_of_agents.entity import ENTITY_NAME
from realm_of_agents.ids import turn_instance_id
from kernel.instances import runtime_status, start_once
from realm_of_agents.routing import route
from realm_of_agents.services import RealmServices
from realm_of_agents.turn import ORCHESTRATOR

log = logging.getLogger("aos.realm.wake")
SOURCE = "agent-events/realm"


@dataclass(frozen=True)
class Delivery:
    """What wake needs of one Service Bus message."""

    body: bytes
    message_id: str | None = None
    sequence_number: int | None = None


@dataclass
class WakeReport:
    started: list[str] = field(default_factory=list)
    existing: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    unrouted: int = 0


async def wake(deliveries: list[Delivery], client: df.DurableOrchestrationClient, realm: RealmServices) -> WakeReport:
    report = WakeReport()
    configs = await realm.current_configs()
    for delivery in deliveries:
        envelope: Envelope | None = None
        try:
            envelope = Envelope.from_json(delivery.body)
        except (ValidationError, ValueError) as error:
            problem: Exception = error
        # a child of the sender's span (the envelope's traceparent); the turns it starts are its children
        with span(WAKE, kind=SpanKind.CONSUMER, parent=envelope.traceparent if envelope else None,
                  attributes=messaging(AGENT_EVENTS, operation="process", message_id=delivery.message_id)) as current:
            if envelope is None:
                reason = f"malformed envelope: {describe_invalid(problem)}"
                fail(current, reason)
                log.error("dead-lettering message %s from %s: %s", delivery.message_id, SOURCE, reason)
                report.dead_lettered.append(await realm.deadletters.record(
                    kind="malformed", reason=reason, body=delivery.body, source=SOURCE, message_id=delivery.message_id))
                continue
            await _wake_agents(envelope, delivery, configs, client, realm, report, current)
    return report


async def _wake_agents(envelope: Envelope, delivery: Delivery, configs: ConfigSet,
                       client: df.DurableOrchestrationClient, realm: RealmServices, report: WakeReport,
                       current: Span) -> None:
    current.set_attributes(clean({"aos.event.id": envelope.id, "aos.event.type": envelope.type,
                                  "aos.event.source": envelope.source, "aos.to": envelope.to}))
    routing = route(envelope, configs.agents, namespaces=configs.namespaces, subscribers=configs.subscribers)
    if routing.unknown_agent is not None:
        reason = f"event '{envelope.id}' ({envelope.type}) is addressed to agent '{routing.unknown_agent}', which is not declared"
        fail(current, reason)
        log.warning("dead-lettering: %s", reason)
        report.dead_lettered.append(await realm.deadletters.record(
            kind="unknown-agent", reason=reason, body=delivery.body, source=SOURCE, message_id=envelope.id))
        return
    if not routing.agents:
        report.unrouted += 1
        log.info("event %s (%s) from %s: no agent subscribes to it", envelope.id, envelope.type, envelope.source)
        return
    current.set_attribute("aos.agents", ",".join(routing.agents))
    # the turns' input carries this span's traceparent: each turn's span is a child of this one
    event = stamp(envelope).model_dump(mode="json", exclude_none=True)
    for agent_id in routing.agents:
        instance_id = turn_instance_id(agent_id, envelope.id)
        if runtime_status(await client.get_status(instance_id)) is not None:
            # A redelivery: the first delivery queued the event and started its turn. Queue
            # nothing again: the entity remembers only recent event ids, and an old event queued
            # a second time would be handed to a turn that has finished.
            report.existing.append(instance_id)
            continue
        await client.signal_entity(df.EntityId(ENTITY_NAME, agent_id), "enqueue",
                                   {"event_id": envelope.id, "seq": delivery.sequence_number})
        started = await start_once(client, ORCHESTRATOR, instance_id,
                                   {"agent_id": agent_id, "event": event, "seq": delivery.sequence_number},
                                   known_absent=True)
        (report.started if started else report.existing).append(instance_id)
