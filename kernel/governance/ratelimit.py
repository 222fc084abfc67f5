"""Tool-call rate limits: fixed UTC windows counted in table storage, never over-admitting.

One row per agent and window length (table ``ratelimits``; PartitionKey the agent, RowKey
``tools|minute`` or ``tools|hour``) holds the current window's start and its count, so the table
stays one or two rows per agent however long it lives. A call is admitted by raising the count
of every window it is limited by:

* a missing row is created with a create-only insert (``count`` 1): of several instances racing,
  one creates it and the others read it and go on as below;
* an existing row is rewritten only with the ETag it was read with (a row of an older window
  starts again at 1); on a conflict the row is read again and the decision made again, so two
  instances can never both take the last slot;
* a window that is full refuses the call, and the windows already raised for it are lowered
  again (ETag-guarded too). A lowering that fails leaves the count one too high: the limiter may
  under-admit for the rest of that window, never over-admit.

A call may carry a ticket: what names it across retries. Namespace quotas pass the turn id, since
a turn begins once however often its policy activity runs. Tool calls pass none: each request
that runs a tool counts (docs/policies.md). The row keeps a digest of each of the window's last
:data:`TICKETS_KEPT` tickets, written with the count in the same ETag-guarded update, so an
activity that runs again (a Durable retry, a redelivery, a host that died after counting) finds
its ticket and is admitted without counting again. A retry that comes after that many other
calls of the window, or in a later window, counts again: it can only under-admit.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from kernel.ports import AlreadyExists, NotFound, PreconditionFailed, TableStore, check_key, check_table_name

__all__ = ["TABLE", "TICKETS_KEPT", "Admission", "RateLimitContention", "ToolCallLimiter", "Window", "window_start"]

TABLE = "ratelimits"
#: Tickets a window's row remembers (16 characters each), so a retried call is not counted twice.
TICKETS_KEPT = 64
#: Window lengths the limiter knows, by name.
WINDOW_SECONDS = {"minute": 60, "hour": 3600}
log = logging.getLogger("aos.governance.ratelimit")


class RateLimitContention(RuntimeError):
    """A counter kept changing under ``max_attempts`` reads; nothing was admitted."""


@dataclass(frozen=True)
class Window:
    """A limit over one fixed window length, and the policies that set it."""

    name: str  # minute | hour
    limit: int
    policies: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.name not in WINDOW_SECONDS:
            raise ValueError(f"unknown window {self.name!r}: expected one of {', '.join(WINDOW_SECONDS)}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int) or self.limit < 0:
            raise ValueError(f"window limit must be a non-negative integer, got {self.limit!r}")


@dataclass(frozen=True)
class Admission:
    """The limiter's answer: admitted, or which window refused with what it had counted."""

    admitted: bool
    window: Window | None = None
    observed: int | None = None  # calls already admitted in the refusing window
    resets_at: datetime | None = None  # when the refusing window ends


def window_start(name: str, now: datetime) -> datetime:
    """The start (UTC) of the fixed window ``name`` that contains ``now``."""
    seconds = WINDOW_SECONDS[name]
    moment = now.astimezone(timezone.utc)
    epoch = int(moment.timestamp())
    return datetime.fromtimestamp(epoch - epoch % seconds, tz=timezone.utc)


class ToolCallLimiter:
    """Admits or refuses an agent's tool calls against per-window limits (see the module docstring)."""

    def __init__(self, tables: TableStore, *, table: str = TABLE, max_attempts: int = 50,
                 counter: str = "tools") -> None:
        """``counter`` names what is counted in the rows' keys (``tools|minute``; namespace quotas count turns)."""
        self._tables = tables
        self._counter = counter
        self.table = check_table_name(table)
        self._max_attempts = max_attempts

    async def admit(self, agent_id: str, windows: Sequence[Window], *, now: datetime,
                    ticket: str | None = None) -> Admission:
        """Count one call of ``agent_id`` in every window, or none if any window is full. A call
        whose ``ticket`` a window already counted is not counted there again."""
        check_key(agent_id, "agent id")
        mark = _ticket_digest(ticket) if ticket else None
        raised: list[Window] = []  # each holds this call's count (now, or from an earlier attempt)
        for window in windows:
            refused = await self._raise(agent_id, window, now, mark)
            if refused is not None:
                for done in reversed(raised):
                    await self._lower(agent_id, done, now, mark)
                return refused
            raised.append(window)
        return Admission(True)

    async def counts(self, agent_id: str, names: Sequence[str], *, now: datetime) -> dict[str, int]:
        """Calls counted so far in the current window of each name (0 for a window not started)."""
        found: dict[str, int] = {}
        for name in names:
            row = await self._get(agent_id, name)
            found[name] = _count_now(row, name, now)
        return found

    async def _raise(self, agent_id: str, window: Window, now: datetime,
                     mark: str | None) -> Admission | None:
        """Add one to the window's count; the refusal when it is full (``None`` when counted, or
        when the window holds the call's ticket ``mark``: counted by an earlier attempt)."""
        for _ in range(self._max_attempts):
            row = await self._get(agent_id, window.name)
            start, count = _current(row, window.name, now)
            held = _tickets(row) if count else []
            if mark is not None and mark in held:
                return None
            if count >= window.limit:
                return Admission(False, window, count, start + timedelta(seconds=WINDOW_SECONDS[window.name]))
            entity = {"PartitionKey": agent_id, "RowKey": self._row_key(window.name),
                      "window_start": start.isoformat(), "count": count + 1}
            kept = held + [mark] if mark is not None else held
            if kept:
                entity["tickets"] = " ".join(kept[-TICKETS_KEPT:])
            try:
                if row is None:
                    await self._tables.insert(self.table, entity)
                else:
                    await self._tables.update(self.table, entity, etag=row["etag"])
                return None
            except (AlreadyExists, PreconditionFailed, NotFound):
                continue  # another instance counted first: read again and decide again
        raise RateLimitContention(f"the {window.name} tool-call counter of agent '{agent_id}' kept changing under "
                                  f"{self._max_attempts} attempts; the call was not admitted")

    async def _lower(self, agent_id: str, window: Window, now: datetime, mark: str | None) -> None:
        """Give back the slot taken for a call another window refused, and its ticket (best effort:
        see the docstring)."""
        start = window_start(window.name, now).isoformat()
        for _ in range(self._max_attempts):
            row = await self._get(agent_id, window.name)
            if row is None or str(row.get("window_start")) < start or int(row.get("count") or 0) < 1:
                return  # the window moved on: nothing to give back
            entity = {"PartitionKey": agent_id, "RowKey": self._row_key(window.name),
                      "window_start": row["window_start"], "count": int(row["count"]) - 1}
            held = _tickets(row)
            if held:
                if mark in held:
                    held.remove(mark)
                entity["tickets"] = " ".join(held)
            try:
                await self._tables.update(self.table, entity, etag=row["etag"])
                return
            except (PreconditionFailed, NotFound):
                continue
        log.warning("the %s tool-call counter of agent %s was left one too high (contention)", window.name, agent_id)

    async def _get(self, agent_id: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._tables.get(self.table, agent_id, self._row_key(name))
        except NotFound:
            return None

    def _row_key(self, name: str) -> str:
        return f"{self._counter}|{name}"


def _current(row: dict[str, Any] | None, name: str, now: datetime) -> tuple[datetime, int]:
    """The window to count in and its count so far: the row's when it is the current window (or a
    the next one, written by an instance whose clock runs a little ahead), else a fresh window at 0."""
    start = window_start(name, now)
    if row is not None:
        try:
            stored = datetime.fromisoformat(str(row.get("window_start")))
        except ValueError:
            stored = None
        if stored is not None and start <= stored <= start + timedelta(seconds=WINDOW_SECONDS[name]):
            return stored, int(row.get("count") or 0)
    return start, 0


def _count_now(row: dict[str, Any] | None, name: str, now: datetime) -> int:
    return _current(row, name, now)[1]


def _tickets(row: dict[str, Any] | None) -> list[str]:
    """The ticket digests a window's row holds, oldest first."""
    return str(row.get("tickets") or "").split() if row is not None else []


def _ticket_digest(ticket: str) -> str:
    """16 hex characters naming a ticket: the row stays small whatever the ids look like."""
    return hashlib.blake2b(ticket.encode("utf-8"), digest_size=8).hexdigest()
