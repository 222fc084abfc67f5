"""The job every system does per event, written once so the alternatives do the same work as ours.

An event wakes an agent; the agent thinks (our offline provider: deterministic text, no network,
the same stand-in for a model that our engine's turns use), updates its bounded memory (our
``realm_of_agents.memory`` window and summary, the same byte-bounded state) and emits an output.
The event payloads are those of ``bench.agent_turns`` (an invoice for budget review).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from kernel.config.models import MemoryBudget
from kernel.inference.offline import complete
from kernel.inference.port import ChatMessage, ChatRequest
from realm_of_agents.memory import Memory, digest, empty_memory, remember_turn

EVENT_TYPE = "invoice.received"
_EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
_BUDGET = MemoryBudget()


@dataclass(frozen=True)
class Event:
    """One event for one agent (the AutoGen message type too, hence a plain dataclass)."""

    id: str
    agent_id: str
    type: str
    time: str
    data: dict[str, Any]


def event(agent_id: str, n: int, run: str = "r") -> Event:
    """The ``n``-th event of a run for ``agent_id``: deterministic id, time and payload."""
    return Event(id=f"{run}-{n}", agent_id=agent_id, type=EVENT_TYPE,
                 time=(_EPOCH + timedelta(seconds=n)).isoformat(),
                 data={"vendor": "Contoso", "amount": 1000 + n, "note": f"invoice {n} for budget review"})


def agent_ids(count: int, prefix: str = "agent") -> list[str]:
    """``count`` agent ids, zero-padded so they sort."""
    return [f"{prefix}-{n:05d}" for n in range(count)]


def initial_state(agent_id: str) -> dict[str, Any]:
    """A registered agent before its first turn: identity, counters and empty memory."""
    return {"agent_id": agent_id, "turns": 0, "memory": empty_memory()}


def think(agent_id: str, item: Event) -> str:
    """The model step: the offline provider's answer to the event, as our turns get it."""
    message = ChatMessage("user", f"Event {item.type} from bench: {json.dumps(item.data, sort_keys=True)}")
    return complete(ChatRequest(agent_id=agent_id, messages=[message])).content


def remember(memory: Memory, item: Event, reply: str) -> Memory:
    """The memory step: the turn's digest into the bounded window (oldest turns into the summary)."""
    return remember_turn(memory, digest(item.id, item.time, item.type, "replied", reply), _BUDGET)


def output(agent_id: str, item: Event, reply: str) -> dict[str, Any]:
    """The output the agent emits: its reply, caused by the event."""
    return {"source": agent_id, "type": "agent.reply", "causation_id": item.id, "data": {"text": reply}}
