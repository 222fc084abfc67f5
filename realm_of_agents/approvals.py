"""Human approval of tool calls: which calls need one, and the record of each request and answer.

An agent's config marks tools as needing approval (``requires_approval`` on a grant, or an
``approvals`` rule with its own deadline). The turn pauses on such a call: it records the
request here, waits for the external event ``approval:<id>`` or its deadline, and records the
decision. The HTTP API lists what is pending and answers it; an answer is written here first
(with an ETag condition, so two people cannot both answer) and then raised in the turn.

Table ``approvals``: PartitionKey ``pending`` while waiting, ``decided`` after (the row moves),
RowKey the approval id, ``<turn id>.<call index>``. Rows whose deadline is older than the history
retention are swept (``realm_of_agents/retention.py``): by then the turn has long decided, and a
pending one can no longer be answered.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kernel.ports import NotFound, PreconditionFailed, TableStore
from kernel.sweep import SweepReport, delete_rows_below

TABLE = "approvals"
PENDING, DECIDED = "pending", "decided"
DEFAULT_TIMEOUT_SECONDS = 3600


@dataclass(frozen=True)
class Requirement:
    """A call needs approval, and how long a human has to decide."""

    timeout_seconds: int


def requirement(config: dict[str, Any], server: str, tool: str) -> Requirement | None:
    """Whether the agent's config (plain JSON, as the turn holds it) requires approval for this call."""
    for rule in config.get("approvals") or []:
        if rule["server"] == server and (rule.get("tools") is None or tool in rule["tools"]):
            return Requirement(int(rule.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)))
    for grant in config.get("tools") or []:
        marked = grant.get("requires_approval", False)
        if grant["server"] == server and (marked is True or (isinstance(marked, list) and tool in marked)):
            return Requirement(DEFAULT_TIMEOUT_SECONDS)
    return None


def approval_id(turn_id: str, index: int) -> str:
    return f"{turn_id}.{index}"


def event_name(approval: str) -> str:
    return f"approval:{approval}"


class ApprovalConflict(Exception):
    """The approval was already answered, or its deadline has passed."""


class ApprovalStore:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    async def request(self, *, approval: str, agent_id: str, turn_id: str, server: str, tool: str,
                      arguments: dict[str, Any], deadline: datetime, event_type: str) -> None:
        """Record a pending approval (idempotent: a retried activity writes the same row)."""
        await self._tables.upsert(TABLE, {
            "PartitionKey": PENDING, "RowKey": approval, "agent_id": agent_id, "turn_id": turn_id,
            "server": server, "tool": tool, "arguments": json.dumps(arguments)[:30000], "deadline": deadline,
            "event_type": event_type, "status": PENDING})

    async def answer(self, approval: str, *, approved: bool, by: str, reason: str | None, now: datetime) -> dict[str, Any]:
        """Mark a pending approval answered (once); returns the row so the caller can raise the event."""
        try:
            row = await self._tables.get(TABLE, PENDING, approval)
        except NotFound:
            raise NotFound(f"no pending approval '{approval}'") from None
        if row.get("answer"):
            raise ApprovalConflict(f"approval '{approval}' was already answered by {json.loads(row['answer'])['by']}")
        if row["deadline"] <= now:
            raise ApprovalConflict(f"the deadline of approval '{approval}' passed at {row['deadline'].isoformat()}")
        decision = {"approved": approved, "by": by, "reason": reason, "at": now.isoformat()}
        try:
            await self._tables.update(TABLE, {**_plain(row), "answer": json.dumps(decision)}, etag=row["etag"])
        except PreconditionFailed:
            raise ApprovalConflict(f"approval '{approval}' was answered by someone else just now") from None
        return {**_view(row), "decision": decision}

    async def decided(self, approval: str, decision: dict[str, Any]) -> None:
        """The turn took its decision (answer or deadline): move the row to the decided partition."""
        try:
            row = await self._tables.get(TABLE, PENDING, approval)
        except NotFound:
            return  # already moved by an earlier run of this activity
        await self._tables.upsert(TABLE, {**_plain(row), "PartitionKey": DECIDED, "status": DECIDED,
                                          "answer": json.dumps(decision)})
        await self._tables.delete(TABLE, PENDING, approval)

    async def sweep(self, deadline_before: datetime) -> SweepReport:
        """Delete the approvals whose deadline is before ``deadline_before``, decided or not."""
        return await delete_rows_below(self._tables, TABLE, "deadline", deadline_before)

    async def pending(self, limit: int = 200) -> list[dict[str, Any]]:
        return [_view(row) for row in await self._tables.query(TABLE, PENDING, limit=limit)]

    async def get(self, approval: str) -> dict[str, Any]:
        for partition in (PENDING, DECIDED):
            try:
                return _view(await self._tables.get(TABLE, partition, approval))
            except NotFound:
                continue
        raise NotFound(f"no approval '{approval}'")


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in row.items() if key not in ("etag", "Timestamp")}


def _view(row: dict[str, Any]) -> dict[str, Any]:
    answer = json.loads(row["answer"]) if row.get("answer") else None
    return {
        "id": row["RowKey"], "status": row.get("status", row["PartitionKey"]), "agent_id": row["agent_id"],
        "turn_id": row["turn_id"], "server": row["server"], "tool": row["tool"],
        "arguments": json.loads(row["arguments"]) if row.get("arguments") else {},
        "event_type": row.get("event_type"), "deadline": row["deadline"].isoformat(), "decision": answer,
    }
