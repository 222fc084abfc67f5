"""Durable instance ids, derived from what they are for, so that asking twice finds the first.

A turn's id comes from the agent and the event's message id: a redelivered message maps to the
same instance, which already exists, so it starts nothing new. Ids are digests, not the raw
message ids, because envelope ids may hold characters instance ids must not.
"""

from __future__ import annotations

import hashlib


def _digest(text: str, length: int = 16) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


#: How the realm's instance ids start: a turn's, a schedule's, a command's.
TURN_PREFIX, SCHEDULE_PREFIX, COMMAND_PREFIX = "turn-", "schedule-", "command-"


def turn_instance_id(agent_id: str, event_id: str) -> str:
    return f"{TURN_PREFIX}{agent_id}-{_digest(event_id)}"


def schedule_instance_id(agent_id: str, schedule_name: str) -> str:
    return f"{SCHEDULE_PREFIX}{agent_id}-{schedule_name}"


def command_instance_id(agent_id: str, operation: str, nonce: str) -> str:
    return f"{COMMAND_PREFIX}{agent_id}-{operation}-{_digest(nonce, 12)}"


def output_id(turn_id: str, index: int | str) -> str:
    """Message ids of a turn's outputs: the same on every replay, so a re-sent output is a duplicate."""
    return f"{turn_id}.{index}"


def scheduled_event_id(agent_id: str, schedule_name: str, fire_time_iso: str) -> str:
    return f"schedule:{agent_id}:{schedule_name}:{fire_time_iso}"
