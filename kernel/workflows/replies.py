"""Answers for waiting runs: agents' replies (from the outputs router) raised as external events.

An agent step's event goes out with ``source`` ``workflow/<run>`` and the attempt's correlation
id; the agent's reply (``agent.reply``, ``agent.declined``, or ``agent.failed`` for a turn that
failed or was refused) comes back on agent-outputs ``to`` that source. The kernel's outputs
router hands it here, and it is raised in the run under the correlation id. A reply for a run that
has finished (it arrived after the step's deadline) or never existed is logged and dropped: the
run already recorded the timeout.
"""

from __future__ import annotations

import logging
from typing import Any

from kernel.messages import Envelope
from kernel.toolbus import belongs_to
from kernel.workflows import ids

log = logging.getLogger("aos.workflows.replies")


def for_run(envelope: Envelope) -> str | None:
    """The run a reply is for, or ``None`` when it is not a workflow's."""
    return ids.run_of_source(envelope.to)


async def deliver_reply(envelope: Envelope, client: Any) -> bool:
    """Raise the reply in its run; False when the envelope is not addressed to a run."""
    run = for_run(envelope)
    if run is None:
        return False
    correlation = envelope.correlation_id or ""
    if not belongs_to(correlation, run):
        log.warning("reply %s to run %s carries correlation id '%s', which the run never sent; dropped",
                    envelope.id, run, correlation)
        return True
    try:
        await client.raise_event(run, correlation, {"type": envelope.type, "source": envelope.source,
                                                    "data": envelope.data})
    except Exception as error:  # the SDK raises a bare Exception with the extension's message
        text = str(error)
        if text.startswith("No instance with ID") or "is gone" in text:
            log.warning("reply %s for %s arrived after run %s had finished (or for no run); dropped",
                        envelope.id, correlation, run)
            return True
        raise
    return True
