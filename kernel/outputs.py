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

from pydantic import ValidationError

from kernel.deadletters import DeadLetterStore
from kernel.messages import Envelope, describe_invalid
from kernel.ports import MessageSender, OutboundMessage
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
        try:
            envelope = Envelope.from_json(body)
        except (ValidationError, ValueError) as error:
            reason = f"malformed envelope on {AGENT_OUTPUTS}: {describe_invalid(error)}"
            report.dead_lettered.append(await deadletters.record(
                kind="malformed", reason=reason, body=body, source=SOURCE, message_id=message_id))
            continue
        if envelope.to and envelope.type not in TERMINAL_TYPES:
            forward.append(OutboundMessage.from_envelope(envelope))
            report.forwarded.append(envelope.id)
        else:
            report.terminal.append(envelope.id)
            log.info("%s from %s to %s: %s", envelope.type, envelope.source, envelope.to or "-", envelope.id)
    if forward:
        await sender.send(AGENT_EVENTS, forward)
    return report
