"""Start an orchestration instance at most once, however many callers race to start it.

Turn, command and schedule instance ids are derived from what they are for, so a second start is
always a duplicate: a redelivered message, two config syncs at once. Durable's ``start_new``
would replace a finished instance with the same id, so callers check first; two callers that
both pass the check meet the "already exists" refusal, which means the same thing.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df

FINISHED = ("Completed", "Failed", "Terminated")


def runtime_status(status: Any) -> str | None:
    """The instance's status name, or ``None`` when the instance does not exist."""
    if status is None or status.runtime_status is None:
        return None
    return str(status.runtime_status.value)


async def start_once(client: df.DurableOrchestrationClient, orchestrator: str, instance_id: str, payload: Any, *,
                     restart_when: tuple[str, ...] = (), known_absent: bool = False) -> bool:
    """Start unless the instance exists (or exists in a status not in ``restart_when``); True if started.
    ``known_absent``: the caller has just seen that it does not exist, so the status is not read again."""
    if not known_absent:
        current = runtime_status(await client.get_status(instance_id))
        if current is not None and current not in restart_when:
            return False
    try:
        await client.start_new(orchestrator, instance_id, payload)
    except Exception as error:  # the SDK raises a bare Exception carrying the extension's message
        if "already exists" in str(error):
            return False
        raise
    return True
