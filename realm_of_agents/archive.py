"""The turn archive: every turn of every agent in full, with a small index to find it again.

Hot memory (``memory.py``) keeps an agent's entity state O(1), so it forgets; the archive does
not. Each finished turn is written twice through the kernel ports:

* the full turn record as JSON to the blob ``<container>/<agent_id>/<turn_id>.json``;
* one index row in the table ``<table>``: PartitionKey = agent id, RowKey =
  ``<inverted finished time in ms, 13 digits>-<turn_id>``, so an ascending partition scan (the
  only order Table storage has) returns the newest turns first. Its properties are small
  scalars: ``turn_id, time, event_type, event_id, outcome, text, tool_calls``, where ``text`` is
  a search text of at most :data:`SEARCH_TEXT_CHARS` characters.

Saving is idempotent: the same record gives the same blob name and the same RowKey, so a retried
save overwrites both. A re-save of the same turn with a different ``finished`` time replaces the
old index row instead of adding one: the RowKey's time part comes from the record, so the one
already stored names the old row. The blob is first written create-only, so a first save (nearly
all of them) reads nothing; only a save that finds the blob there reads it and overwrites.

Search is lexical (``purpose.terms``: stop words dropped, light stemming) over the index rows'
text. Table storage has no full-text index, so a search reads rows and scores them here; to keep
its cost bounded it reads at most ``scan`` rows, newest first (default :data:`SEARCH_SCAN_ROWS`),
and turns older than that are not found by search (``get`` still reads them by id).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from kernel.ports import AlreadyExists, BlobStore, NotFound, TableStore, check_blob_name, check_container_name, check_key, check_table_name
from realm_of_agents.purpose import event_text, terms

__all__ = ["SEARCH_SCAN_ROWS", "SEARCH_TEXT_CHARS", "TurnArchive", "row_key", "search_text"]

#: Longest search text kept in an index row (the blob has everything).
SEARCH_TEXT_CHARS = 2000
#: Share of the search text the event (type, subject, data) may take, so the reply still fits.
_EVENT_TEXT_CHARS = 1200
#: Default bound of rows one search reads (newest first): at ~2 KB of text each, about 4 MB.
SEARCH_SCAN_ROWS = 2000
#: Inverted-time base: 13 digits of milliseconds cover every date up to the year 2286.
_TIME_DIGITS = 13
_TIME_BASE = 10**_TIME_DIGITS - 1
_INDEX_FIELDS = ("turn_id", "time", "event_type", "event_id", "outcome", "text", "tool_calls")


class TurnArchive:
    """Turn records in blob storage, indexed per agent in table storage (see the module docstring)."""

    def __init__(self, blobs: BlobStore, tables: TableStore, *, container: str = "turns", table: str = "turns") -> None:
        self._blobs = blobs
        self._tables = tables
        self.container = check_container_name(container)
        self.table = check_table_name(table)

    # -- writing --------------------------------------------------------------------------------

    async def save(self, record: Mapping[str, Any]) -> bool:
        """Archive one finished turn: the record as a blob, then its index row (both overwritten on retry).
        Returns whether the turn was archived before (this call is a retry)."""
        if not isinstance(record, Mapping):
            raise TypeError(f"a turn record must be a mapping, got {type(record).__name__}")
        agent_id = _check_id(record.get("agent_id"), "agent id")
        turn_id = _check_id(record.get("turn_id"), "turn id")
        finished = record.get("finished") or record.get("started")
        row_time = _row_time(finished, turn_id)
        name = _blob_name(agent_id, turn_id)

        try:
            body = json.dumps(dict(record), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as error:
            raise ValueError(f"turn {turn_id!r} of agent {agent_id!r} is not plain JSON: {error}") from error
        previous_time: str | None = None
        existed = False
        try:  # create-only: a first attempt (nearly every call) needs no read
            await self._blobs.put(self.container, name, body, content_type="application/json", overwrite=False)
        except AlreadyExists:  # a retry: learn where its index row went, then overwrite
            existed = True
            previous_time = await self._stored_row_time(name, turn_id)
            await self._blobs.put(self.container, name, body, content_type="application/json")
        event = record.get("event") if isinstance(record.get("event"), Mapping) else {}
        steps = record.get("steps") if isinstance(record.get("steps"), list) else []
        await self._tables.upsert(
            self.table,
            {
                "PartitionKey": agent_id,
                "RowKey": f"{row_time}-{turn_id}",
                "turn_id": turn_id,
                "time": str(finished),
                "event_type": str(event.get("type") or ""),
                "event_id": str(event.get("id") or ""),
                "outcome": str(record.get("outcome") or ""),
                "text": search_text(record),
                "tool_calls": sum(1 for step in steps if isinstance(step, Mapping) and step.get("kind") == "tool"),
            },
        )
        if previous_time is not None and previous_time != row_time:
            await self._tables.delete(self.table, agent_id, f"{previous_time}-{turn_id}")
        return existed

    async def _stored_row_time(self, name: str, turn_id: str) -> str | None:
        """The RowKey time part of the turn record stored as ``name`` (``None``: gone, or not a record;
        blobs from before this held it as metadata too, and their record gives the same value)."""
        try:
            stored = json.loads(await self._blobs.get(self.container, name))
            return _row_time(stored.get("finished") or stored.get("started"), turn_id)
        except (NotFound, ValueError, TypeError, AttributeError):
            return None

    # -- reading --------------------------------------------------------------------------------

    async def get(self, agent_id: str, turn_id: str) -> dict[str, Any]:
        """The full turn record; :class:`NotFound` naming the agent and the turn."""
        agent_id = _check_id(agent_id, "agent id")
        turn_id = _check_id(turn_id, "turn id")
        try:
            data = await self._blobs.get(self.container, _blob_name(agent_id, turn_id))
        except NotFound:
            raise NotFound(f"agent '{agent_id}' has no archived turn '{turn_id}'") from None
        return json.loads(data)

    async def recent(self, agent_id: str, limit: int = 20) -> list[dict[str, Any]]:
        """The index rows of the newest ``limit`` turns, newest first."""
        agent_id = _check_id(agent_id, "agent id")
        _check_positive(limit, "limit")
        return [_public(row) for row in await self._rows(agent_id, limit)]

    async def search(self, agent_id: str, query: str, *, limit: int = 10, scan: int = SEARCH_SCAN_ROWS) -> list[dict[str, Any]]:
        """Turns whose index text shares terms with ``query``, best first (ties: newer first).

        ``score`` is the share of the query's terms found in the turn's text (0-1, 3 decimals);
        turns without any are left out. Only the newest ``scan`` turns are read: Table storage has
        no full-text index, so every candidate row is fetched and scored here, and the bound keeps
        one search's cost flat however long the agent has lived.
        """
        agent_id = _check_id(agent_id, "agent id")
        _check_positive(limit, "limit")
        _check_positive(scan, "scan")
        if not isinstance(query, str):
            raise ValueError(f"a search query must be text, got {type(query).__name__}")
        wanted = terms(query)
        if not wanted:
            raise ValueError(
                f"the search query {query!r} has no searchable words (after dropping stop words); "
                "use words that appear in the turns, such as an event type or a vendor name"
            )
        scored: list[tuple[float, int, dict[str, Any]]] = []
        for position, row in enumerate(await self._rows(agent_id, scan)):
            found = len(wanted & terms(str(row.get("text", ""))))
            if found:
                scored.append((found / len(wanted), position, row))
        scored.sort(key=lambda item: (-item[0], item[1]))
        return [{**_public(row), "score": round(score, 3)} for score, _, row in scored[:limit]]

    async def _rows(self, agent_id: str, limit: int) -> list[dict[str, Any]]:
        try:
            return await self._tables.query(self.table, agent_id, limit=limit)
        except NotFound:  # an adapter that reports a table nobody has written to yet
            return []


def search_text(record: Mapping[str, Any]) -> str:
    """What the index row keeps to search a turn by: event type, subject and data, reply, rationale.

    The event part is capped so that a large payload leaves room for the reply; the whole text is
    whitespace-collapsed and at most :data:`SEARCH_TEXT_CHARS` characters.
    """
    event = record.get("event") if isinstance(record.get("event"), Mapping) else {}
    event_part = event_text(str(event.get("type") or ""), event.get("data"))
    if event.get("subject"):
        event_part = f"{event_part} {event['subject']}"
    decision = record.get("decision") if isinstance(record.get("decision"), Mapping) else {}
    parts = [
        _collapse(event_part)[:_EVENT_TEXT_CHARS],
        _collapse(str(record.get("reply") or "")),
        _collapse(str(decision.get("rationale") or "")),
    ]
    return " ".join(part for part in parts if part)[:SEARCH_TEXT_CHARS]


def row_key(record: Mapping[str, Any]) -> str:
    """The index RowKey of a record: inverted ``finished`` milliseconds, then the turn id."""
    turn_id = _check_id(record.get("turn_id"), "turn id")
    return f"{_row_time(record.get('finished') or record.get('started'), turn_id)}-{turn_id}"


# -- helpers --------------------------------------------------------------------------------------


def _check_id(value: Any, what: str) -> str:
    """An agent or turn id usable as a table key and as one blob path segment."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"invalid {what} {value!r}: expected non-empty text")
    try:
        check_key(value, what)
        check_blob_name(f"{value}/x")
    except ValueError:
        raise ValueError(
            f"invalid {what} {value!r}: up to 1024 characters, no '/', '\\', '#', '?' or control characters, "
            "not '.' or '..' and not ending with '.'"
        ) from None
    return value


def _blob_name(agent_id: str, turn_id: str) -> str:
    return f"{agent_id}/{turn_id}.json"


def _row_time(when: Any, turn_id: str) -> str:
    """Milliseconds of ``when`` subtracted from 10**13 - 1, zero padded: sorts newest first."""
    return f"{_TIME_BASE - _millis(when, turn_id):0{_TIME_DIGITS}d}"


def _millis(when: Any, turn_id: str) -> int:
    if not isinstance(when, str) or not when:
        raise ValueError(f"turn {turn_id!r} has no 'finished' (or 'started') time to index it by")
    try:
        moment = datetime.fromisoformat(when)
    except ValueError:
        raise ValueError(f"turn {turn_id!r}: 'finished' is not an ISO 8601 time: {when!r}") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    millis = int(moment.timestamp() * 1000)
    if not 0 <= millis <= _TIME_BASE:
        raise ValueError(f"turn {turn_id!r}: time {when!r} is outside 1970-2286")
    return millis


def _public(row: Mapping[str, Any]) -> dict[str, Any]:
    return {name: row.get(name) for name in _INDEX_FIELDS}


def _check_positive(value: Any, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, got {value!r}")


def _collapse(text: str) -> str:
    return " ".join(text.split())
