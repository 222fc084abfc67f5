"""The kernel's outputs router: what agents publish on the outputs topic, taken where it goes.

Turns publish every output on ``agent-outputs``. Events an agent sends to another agent are
forwarded to ``agent-events`` (same message id, so a redelivered output is the same event and
the receiving agent's turn id is the same); replies and declines to their sources stay on the
outputs topic for whoever subscribes to it (a caller's own subscription, a bridge). Malformed
messages are kept in the dead-letter store with the reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from opentelemetry.trace import SpanKind
from pydantic import ValidationError

from kernel.deadletters import DeadLetterStore
from kernel.messages import Envelope, describe_invalid
from kernel.ports import MessageSender, OutboundMessage
from kernel.telemetry.spans import OUTPUT, clean, fail, messaging, span, stamp
from kernel.topology import AGENT_EVENTS, AGENT_OUTPUTS, KERNEL_SUBSCRIPTION

log = logging.getLogger("aos.kernel.outputs")
TERMINAL_TYPES = ("agent.reply", "agent.declined")
SOURCE = f"{AGENT_OUTPUTS}/{KERNEL_SUBSCRIPTION}"


@dataclass
class RouteReport:
    forwarded: list[str] = field(default_factory=list)
    terminal: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)


async def route_outputs(bodies: list[tuple[bytes, str | None]], sender: MessageSender,
                        deadletters: DeadLetterStore) -> RouteReport:
    report = RouteReport()
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
                  attributes=messaging(AGENT_OUTPUTS, operation="process", message_id=message_id)) as current:
            if envelope is None:
                reason = f"malformed envelope on {AGENT_OUTPUTS}: {describe_invalid(problem)}"
                fail(current, reason)
                report.dead_lettered.append(await deadletters.record(
                    kind="malformed", reason=reason, body=body, source=SOURCE, message_id=message_id))
                continue
            current.set_attributes(clean({"aos.agent_id": envelope.source, "aos.event.type": envelope.type,
                                          "aos.to": envelope.to}))
            if envelope.to and envelope.type not in TERMINAL_TYPES:
                forward.append(OutboundMessage.from_envelope(stamp(envelope)))
                report.forwarded.append(envelope.id)
                current.set_attribute("aos.route", AGENT_EVENTS)
            else:
                report.terminal.append(envelope.id)
                current.set_attribute("aos.route", "terminal")
                log.info("%s from %s to %s: %s", envelope.type, envelope.source, envelope.to or "-", envelope.id)
    if forward:
        await sender.send(AGENT_EVENTS, forward)
    return report
