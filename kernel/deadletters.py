"""The platform's dead-letter store: messages AOS could not act on, kept with the reason.

A malformed envelope, an event for an agent that does not exist, an event refused by a retired
agent: none of these may be lost, and none may block the messages behind it. The Python worker
cannot dead-letter one message of a batch on the broker with a reason, so the platform keeps its
own record: the full body in blob storage (``deadletters/<id>.bin``) and an index row with the
reason in table storage (``deadletters``), both through the kernel's storage ports. Messages
that fail for transient reasons are not recorded here: their function fails, the broker
redelivers them, and after ``maxDeliveryCount`` attempts the broker dead-letters them itself.

Read them with ``GET /api/deadletters`` (and ``aos deadletters``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from datetime import datetime, timezone
from typing import Any

from opentelemetry import trace

from kernel.ports import BlobStore, NotFound, TableStore
from kernel.telemetry.logs import scrub
from kernel.telemetry.setup import ensure_configured

CONTAINER = "deadletters"
TABLE = "deadletters"
PARTITION = "deadletter"
KEYS_PARTITION = "key"  # identity -> record id, so recording the same message twice keeps one record
EXCERPT_CHARS = 1000
_MAX_MS = 10**13


class DeadLetterStore:
    def __init__(self, blobs: BlobStore, tables: TableStore) -> None:
        self._blobs = blobs
        self._tables = tables

    async def record(self, *, kind: str, reason: str, body: bytes, source: str, message_id: str | None = None,
                     at: datetime | None = None) -> str:
        """Keep ``body`` with ``reason``; returns the record id. Idempotent per (source, message id, kind)."""
        at = at or datetime.now(timezone.utc)
        identity = f"{source}\n{message_id or hashlib.sha256(body).hexdigest()}\n{kind}"
        short = hashlib.sha256(identity.encode()).hexdigest()[:16]
        try:
            return str((await self._tables.get(TABLE, KEYS_PARTITION, short))["record"])
        except NotFound:
            pass
        record_id = f"{_MAX_MS - int(at.timestamp() * 1000):013d}-{short}"
        await self._blobs.put(CONTAINER, f"{record_id}.bin", body, content_type="application/octet-stream")
        excerpt = body[:EXCERPT_CHARS * 4].decode("utf-8", errors="replace")[:EXCERPT_CHARS]
        await self._tables.upsert(TABLE, {
            "PartitionKey": PARTITION, "RowKey": record_id, "key": short, "kind": kind, "reason": reason[:2000],
            "source": source, "message_id": message_id, "time": at, "size": len(body), "excerpt": excerpt,
        })
        await self._tables.upsert(TABLE, {"PartitionKey": KEYS_PARTITION, "RowKey": short, "record": record_id})
        _observe(kind, source, reason, body, record_id)
        return record_id

    async def list(self, limit: int = 50) -> list[dict[str, Any]]:
        """Newest first."""
        rows = await self._tables.query(TABLE, PARTITION, limit=limit)
        return [_public(row) for row in rows]

    async def get(self, record_id: str) -> dict[str, Any]:
        try:
            row = await self._tables.get(TABLE, PARTITION, record_id)
        except NotFound:
            raise NotFound(f"no dead-letter record '{record_id}'") from None
        body = await self._blobs.get(CONTAINER, f"{record_id}.bin")
        return {**_public(row), "body": body.decode("utf-8", errors="replace")}


def _observe(kind: str, source: str, reason: str, body: bytes, record_id: str) -> None:
    """Count the dead letter (``aos.deadletters``) and note it on the current span (the record is
    kept already: telemetry failing here changes nothing)."""
    try:
        trace.get_current_span().add_event("aos.deadletter", {
            "aos.deadletter.id": record_id, "aos.deadletter.kind": kind, "aos.deadletter.reason": scrub(reason)[:500]})
        ensure_configured().instruments.record_deadletter(kind, source, _addressee(body))
    except Exception:
        logging.getLogger("aos.telemetry").warning("telemetry: counting dead letter %s failed", record_id, exc_info=True)


def _addressee(body: bytes) -> str | None:
    """The declared agent an envelope-shaped body is addressed to, if any (for the per-agent count;
    other names are left out, so a sender cannot flood the metric with made-up agent ids)."""
    if len(body) > 1_000_000:
        return None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    to = data.get("to") if isinstance(data, dict) else None
    if not isinstance(to, str) or not to:
        return None
    from kernel.config.store import default_store

    try:
        return to if to in default_store().current().agents else None
    except Exception:  # noqa: BLE001 - unreadable configs must not stop a dead letter being kept
        return None


def _public(row: dict[str, Any]) -> dict[str, Any]:
    time = row.get("time")
    return {
        "id": row["RowKey"], "kind": row.get("kind"), "reason": row.get("reason"), "source": row.get("source"),
        "message_id": row.get("message_id"), "time": time.isoformat() if isinstance(time, datetime) else time,
        "size": row.get("size"), "excerpt": row.get("excerpt"),
    }
