"""The kernel's outputs router: what agents publish on the outputs topic, taken where it goes.

Turns publish every output on ``agent-outputs``. Events an agent sends to another agent are
forwarded to ``agent-events`` (same message id, so a redelivered output is the same event and
the receiving agent's turn id is the same); replies and declines to their sources stay on the
outputs topic for whoever subscribes to it (a caller's own subscription, a bridge). Malformed
messages are kept in the dead-letter store with the reason.

Namespaces: an agent's ``to`` is resolved in the sender's namespace (``cfo`` from ``acme.clerk``
is ``acme.cfo``; ``default.cfo`` names the default namespace's), and the event goes on with the
resolved address. An event into another namespace needs a route of the sender's namespace
(``kernel.namespaces.routed``); without one it is not delivered: ``route.refused`` on the
sender's audit chain and the event in the dead-letter store (kind ``route-refused``) with why.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from kernel import namespaces as ns
from kernel.config.loader import ConfigSet
from kernel.deadletters import DeadLetterStore
from kernel.messages import Envelope, describe_invalid
from kernel.ports import MessageSender, OutboundMessage
from kernel.telemetry.spans import OUTPUT, clean, fail, messaging, span, stamp
from kernel.topology import AGENT_EVENTS, AGENT_OUTPUTS, KERNEL_SUBSCRIPTION
from kernel.workflows import replies

log = logging.getLogger("aos.kernel.outputs")
#: Replies to an event's source (``agent.failed``: its turn failed or was refused), never forwarded as events.
TERMINAL_TYPES = ("agent.reply", "agent.declined", "agent.failed")
SOURCE = f"{AGENT_OUTPUTS}/{KERNEL_SUBSCRIPTION}"
ROUTE_REFUSED = "route.refused"


class AuditSink(Protocol):
    async def append(self, chain: str, kind: str, *, actor: str, data: Mapping[str, Any],
                     subject: str | None = None) -> Any: ...


@dataclass
class RouteReport:
    forwarded: list[str] = field(default_factory=list)
    terminal: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)


async def route_outputs(bodies: list[tuple[bytes, str | None]], sender: MessageSender,
                        deadletters: DeadLetterStore, *, configs: Callable[[], ConfigSet] | None = None,
                        audit: AuditSink | None = None, workflows: Any = None) -> RouteReport:
    """``configs`` (the current configs) resolves agents' ``to`` in their namespaces and checks routes;
    ``audit`` records refusals. Without ``configs`` events are forwarded as they are. ``workflows``
    (a durable client of the kernel's task hub) gets replies addressed to workflow runs raised in them."""
    report = RouteReport()
    current = configs() if configs is not None else None
    forward: list[OutboundMessage] = []
    for body, message_id in bodies:
        envelope: Envelope | None = None
        try:
            envelope = Envelope.from_json(body)
        except (ValidationError, ValueError) as error:
            problem: Exception = error
        # a child of the publishing turn's span; a forwarded event carries this span on, so the
        # receiving agent's wake is its child
        with span(OUTPUT, kind=SpanKind.CONSUMER, parent=envelope.traceparent if envelope else None,
                  attributes=messaging(AGENT_OUTPUTS, operation="process", message_id=message_id)) as current_span:
            if envelope is None:
                reason = f"malformed envelope on {AGENT_OUTPUTS}: {describe_invalid(problem)}"
                fail(current_span, reason)
                report.dead_lettered.append(await deadletters.record(
                    kind="malformed", reason=reason, body=body, source=SOURCE, message_id=message_id))
                continue
            current_span.set_attributes(clean({"aos.agent_id": envelope.source, "aos.event.type": envelope.type,
                                          "aos.to": envelope.to}))
            if envelope.to and envelope.type not in TERMINAL_TYPES:
                if current is not None and envelope.source in current.agents:
                    envelope, refusal = _address(envelope, current)
                    if refusal is not None:
                        fail(current_span, refusal)
                        await _refuse(envelope, body, refusal, deadletters, audit, report)
                        continue
                forward.append(OutboundMessage.from_envelope(stamp(envelope)))
                report.forwarded.append(envelope.id)
                current_span.set_attribute("aos.route", AGENT_EVENTS)
            else:
                report.terminal.append(envelope.id)
                current_span.set_attribute("aos.route", "terminal")
                if workflows is not None and await replies.deliver_reply(envelope, workflows):
                    current_span.set_attribute("aos.route", "workflow")
                log.info("%s from %s to %s: %s", envelope.type, envelope.source, envelope.to or "-", envelope.id)
    if forward:
        await sender.send(AGENT_EVENTS, forward)
    return report


def _address(envelope: Envelope, configs: ConfigSet) -> tuple[Envelope, str | None]:
    """The event with ``to`` resolved in its sender's namespace, and why it may not go there (or ``None``)."""
    origin = ns.namespace_of(envelope.source)
    target = ns.resolve(origin, envelope.to or "")
    target_namespace, target_id = ns.split(target)
    resolved = envelope.model_copy(update={"to": target}) if target != envelope.to else envelope
    if ns.routed(configs.namespaces, origin, target_namespace, "agents", target_id):
        return resolved, None
    return resolved, (f"agent '{envelope.source}' may not send '{envelope.type}' to agent '{target}': "
                      + ns.route_refusal(origin, target_namespace, "agents", target_id))


async def _refuse(envelope: Envelope, body: bytes, reason: str, deadletters: DeadLetterStore,
                  audit: AuditSink | None, report: RouteReport) -> None:
    """Not delivered: kept in the dead-letter store and audited on the sender's chain."""
    log.warning("not delivered: %s", reason)
    report.refused.append(envelope.id)
    report.dead_lettered.append(await deadletters.record(
        kind="route-refused", reason=reason, body=body, source=SOURCE, message_id=envelope.id))
    if audit is None:
        return
    try:
        await audit.append(envelope.source, ROUTE_REFUSED, actor=f"namespace:{ns.namespace_of(envelope.source)}",
                           subject=envelope.to, data={"event_id": envelope.id, "type": envelope.type,
                                                      "to": envelope.to, "reason": reason,
                                                      "causation_id": envelope.causation_id})
    except Exception as error:  # noqa: BLE001 - the dead letter keeps the refusal; the audit outage is logged
        log.error("audit record %s for %s could not be written: %s", ROUTE_REFUSED, envelope.id,
                  type(error).__name__)
