"""Token usage per agent, per day, per endpoint and per adapter, kept in the table ``usage``.

One row per (agent, UTC day, endpoint, adapter): PartitionKey is the agent id, RowKey
``<day>|<endpoint>|<adapter>`` (``offline`` for the offline provider, ``-`` for no adapter). Each
model call adds to its row: ``calls``, ``prompt_tokens``, ``completion_tokens``; a cached answer
adds to ``cache_hits`` and to ``saved_prompt_tokens`` / ``saved_completion_tokens`` (the tokens
it would have cost) instead; a call answered by the base model because the adapter is not
served adds to ``fallbacks`` and keeps ``last_fallback_reason``. Offline counts are words, not
tokens, and their rows say ``offline``.

Updates are read-modify-write guarded by the row's ETag and retried on a conflict, so concurrent
calls of one agent (several Function instances) never lose a count. A repeated activity (the
Durable retry of a model call whose answer was lost) counts again: the tokens were spent again.
Reading sums the rows of a range of days.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from typing import Any

from kernel.inference.port import Completion
from kernel.ports import AlreadyExists, NotFound, PreconditionFailed, TableStore

TABLE = "usage"
COUNTERS = ("calls", "prompt_tokens", "completion_tokens", "cache_hits", "saved_prompt_tokens",
            "saved_completion_tokens", "fallbacks")
_ATTEMPTS = 20
log = logging.getLogger("aos.inference.usage")


def row_key(day: str, endpoint: str, adapter: str) -> str:
    return f"{day}|{endpoint}|{adapter}"


class UsageLedger:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    async def record(self, agent_id: str, completion: Completion, *, saved: tuple[int, int] = (0, 0),
                     at: datetime | None = None) -> None:
        """Add one call to its row (never raises: accounting must not fail the call it counts)."""
        moment = at or datetime.now(timezone.utc)
        endpoint = completion.endpoint if completion.provider != "offline" else "offline"
        adapter = completion.adapter or "-"
        added = {
            "calls": 1,
            "prompt_tokens": completion.usage.prompt_tokens,
            "completion_tokens": completion.usage.completion_tokens,
            "cache_hits": 1 if completion.cached else 0,
            "saved_prompt_tokens": saved[0],
            "saved_completion_tokens": saved[1],
            "fallbacks": 1 if completion.fallback else 0,
        }
        latest: dict[str, Any] = {"endpoint": endpoint or "none", "adapter": adapter, "provider": completion.provider,
                                  "last_model": completion.model, "updated": moment}
        if completion.fallback:
            latest["last_fallback_reason"] = str(completion.fallback.get("reason", ""))[:500]
        try:
            await self._add(agent_id, row_key(moment.date().isoformat(), endpoint or "none", adapter), added, latest)
        except Exception as error:
            log.warning("usage of agent %s not recorded: %s: %s", agent_id, type(error).__name__, error)

    async def _add(self, agent_id: str, key: str, added: dict[str, int], latest: dict[str, Any]) -> None:
        for _ in range(_ATTEMPTS):
            try:
                row = await self._tables.get(TABLE, agent_id, key)
            except NotFound:
                try:
                    await self._tables.insert(TABLE, {"PartitionKey": agent_id, "RowKey": key, **added, **latest})
                    return
                except AlreadyExists:
                    continue
            etag = row.pop("etag")
            for name, value in added.items():
                row[name] = int(row.get(name) or 0) + value
            row.update(latest)
            try:
                await self._tables.update(TABLE, row, etag=etag)
                return
            except (PreconditionFailed, NotFound):
                continue
        raise RuntimeError(f"row {agent_id}/{key} kept changing under {_ATTEMPTS} attempts")

    async def rows(self, agent_id: str, since: date, until: date) -> list[dict[str, Any]]:
        """The agent's rows from day ``since`` to day ``until``, both included."""
        end = (until + timedelta(days=1)).isoformat()
        return await self._tables.query(TABLE, agent_id, row_key_from=since.isoformat(), row_key_to=end)

    async def report(self, agent_ids: Iterable[str], *, days: int = 30, today: date | None = None) -> dict[str, Any]:
        """Totals, by agent, by adapter, by endpoint, by route (``endpoint/adapter``) and by day, over the
        last ``days`` days (today included)."""
        until = today or datetime.now(timezone.utc).date()
        since = until - timedelta(days=max(1, days) - 1)
        report: dict[str, Any] = {"since": since.isoformat(), "until": until.isoformat(), "total": _zero(),
                                  "agents": {}}
        for agent_id in agent_ids:
            rows = await self.rows(agent_id, since, until)
            if not rows:
                continue
            entry: dict[str, Any] = {"total": _zero(), "by_adapter": {}, "by_endpoint": {}, "by_route": {},
                                     "by_day": {}}
            for row in rows:
                day, endpoint, adapter = row["RowKey"].split("|", 2)
                for bucket in (report["total"], entry["total"], entry["by_adapter"].setdefault(adapter, _zero()),
                               entry["by_endpoint"].setdefault(endpoint, _zero()),
                               entry["by_route"].setdefault(f"{endpoint}/{adapter}", _zero()),
                               entry["by_day"].setdefault(day, _zero())):
                    for name in COUNTERS:
                        bucket[name] += int(row.get(name) or 0)
                if row.get("last_fallback_reason"):
                    entry.setdefault("last_fallback", {})[adapter] = row["last_fallback_reason"]
            report["agents"][agent_id] = entry
        return report


def _zero() -> dict[str, int]:
    return dict.fromkeys(COUNTERS, 0)
