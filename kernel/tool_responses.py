"""The kernel's trigger on the MCP responses topic: each answer raised in the turn that waits for it.

A turn that sent a tool request waits for an external event named by the call id; this delivers
the gateway's response as that event. A response nobody can be waiting for — its turn does not
exist or has finished (the answer came after the turn's timeout), or its correlation id is not
one that turn could have asked for — is kept in the dead-letter store with the reason, and the
other responses of the batch are delivered as usual.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import Span, SpanKind
from pydantic import ValidationError

from kernel.deadletters import DeadLetterStore
from kernel.messages import Envelope, describe_invalid
from kernel.telemetry.spans import TOOL_RESPONSE, fail, messaging, span
from kernel.toolbus import RESPONSE_TYPE, belongs_to
from kernel.topology import KERNEL_SUBSCRIPTION, MCP_RESPONSES
from kernel.workflows.ids import is_run

log = logging.getLogger("aos.kernel.tools")
SOURCE = f"{MCP_RESPONSES}/{KERNEL_SUBSCRIPTION}"


@dataclass
class DeliveryReport:
    delivered: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)


async def deliver_responses(bodies: list[tuple[bytes, str | None]], client: Any,
                            deadletters: DeadLetterStore, workflows: Any = None) -> DeliveryReport:
    """Raise each response in its turn (``client``: a durable orchestration client of the realm's
    task hub), or in its workflow run (``workflows``: a client of the kernel's own hub)."""
    report = DeliveryReport()
    for body, message_id in bodies:
        envelope: Envelope | None
        try:
            envelope, problem = Envelope.from_json(body), None
        except (ValidationError, ValueError) as error:
            envelope, problem = None, f"malformed envelope on {MCP_RESPONSES}: {describe_invalid(error)}"
        # a child of the gateway's span (the answer carries its traceparent)
        with span(TOOL_RESPONSE, kind=SpanKind.CONSUMER, parent=envelope.traceparent if envelope else None,
                  attributes={**messaging(MCP_RESPONSES, operation="process", message_id=message_id),
                              "aos.turn_id": envelope.to if envelope else None,
                              "aos.mcp.call_id": envelope.correlation_id if envelope else None}) as current:
            target = workflows if workflows is not None and envelope is not None and is_run(envelope.to) else client
            await _deliver(body, message_id, envelope, problem, target, deadletters, report, current)
    return report


async def _deliver(body: bytes, message_id: str | None, envelope: Envelope | None, problem: str | None, client: Any,
                   deadletters: DeadLetterStore, report: DeliveryReport, current: Span) -> None:
    kind = "malformed"
    if envelope is not None:
        problem = _contract_problem(envelope)
    if envelope is not None and problem is None:
        assert envelope.to and envelope.correlation_id
        try:  # raise first: the one Durable call the common case needs
            await client.raise_event(envelope.to, envelope.correlation_id, envelope.data)
            report.delivered.append(envelope.correlation_id)
            return
        except Exception as error:  # the SDK raises a bare Exception with the extension's message
            kind, problem = _undeliverable(error, envelope)
    fail(current, problem or "undeliverable")
    report.dead_lettered.append(await deadletters.record(
        kind=kind, reason=problem or "undeliverable", body=body, source=SOURCE, message_id=message_id))
    log.warning("%s", problem)


def _undeliverable(error: Exception, envelope: Envelope) -> tuple[str, str]:
    """Which dead letter a failed raise makes; other failures propagate (the broker redelivers)."""
    text = str(error)
    if text.startswith("No instance with ID"):  # 404
        return "unknown-correlation", (f"response for unknown correlation id '{envelope.correlation_id}': "
                                       f"no turn '{envelope.to}'")
    if "is gone" in text:  # 410: completed, failed or terminated
        return "late-response", (f"response for '{envelope.correlation_id}' arrived after turn '{envelope.to}' "
                                 "had finished")
    raise error


def _contract_problem(envelope: Envelope) -> str | None:
    if envelope.type != RESPONSE_TYPE:
        return f"'{envelope.type}' on {MCP_RESPONSES}: only '{RESPONSE_TYPE}' is answered here"
    if not envelope.to or not envelope.correlation_id:
        return f"response '{envelope.id}' names no turn ('to') or no correlation id"
    if not belongs_to(envelope.correlation_id, envelope.to):
        return (f"response for unknown correlation id '{envelope.correlation_id}': turn '{envelope.to}' "
                "never asked for it")
    return None
