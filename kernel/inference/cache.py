"""The response cache: answers kept in table storage, keyed by the full request, for a TTL.

The key is the SHA-256 of the canonical JSON of everything that shapes an answer: the endpoint
(id and URL), the model sent, the adapter asked for, the messages, the tools, the temperature,
``max_tokens`` and the response format. Equal requests give equal keys whatever their key order.

Which requests are cached is the endpoint's choice (``cache``): by default only deterministic
ones (temperature 0, such as the purpose check and summaries), because a sampled answer is meant
to vary; ``cache.sampled: true`` caches those too, ``cache.enabled: false`` nothing.

Entries live in the table ``inferencecache`` (PartitionKey: endpoint id, RowKey: the key) through
the ``TableStore`` port: SQLite embedded, Azure Table storage in Azure. An expired entry is
ignored and deleted when it is next read; the realm's hourly retention timer sweeps the rest
(:meth:`ResponseCache.sweep`). An answer whose JSON is
longer than 30,000 characters is not cached (a table property holds at most 32K characters).
A storage failure never fails a model call: the cache is skipped and the failure logged.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from datetime import datetime, timedelta, timezone
from typing import Any

from kernel.governance.redaction import digest
from kernel.inference.port import ChatRequest, Completion, ToolCall, Usage
from kernel.ports import NotFound, TableStore
from kernel.sweep import SweepReport, delete_rows_below

TABLE = "inferencecache"
MAX_CHARS = 30_000
log = logging.getLogger("aos.inference.cache")


def cache_key(endpoint_id: str, url: str, request: ChatRequest) -> str:
    """The digest of the request as sent (``request.model`` is the model sent)."""
    return digest({
        "endpoint": endpoint_id, "url": url, "model": request.model, "adapter": request.adapter,
        "messages": [asdict(message) for message in request.messages],
        "tools": [asdict(tool) for tool in request.tools],
        "temperature": request.temperature, "max_tokens": request.max_tokens,
        "response_format": request.response_format,
    })


class ResponseCache:
    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    async def get(self, endpoint_id: str, key: str) -> tuple[Completion, datetime] | None:
        """The cached completion (as it first came back, usage included) and when it was stored."""
        try:
            row = await self._tables.get(TABLE, endpoint_id, key)
        except NotFound:
            return None
        except Exception as error:  # storage trouble must not fail the model call
            log.warning("response cache read failed (%s); calling the endpoint", type(error).__name__)
            return None
        if row["expires"] <= datetime.now(timezone.utc):
            try:
                await self._tables.delete(TABLE, endpoint_id, key, etag=row["etag"])
            except Exception:  # someone refreshed or removed it meanwhile: either is fine
                pass
            return None
        try:
            return _completion(json.loads(row["completion"])), row["stored"]
        except (KeyError, TypeError, ValueError):
            log.warning("response cache entry %s/%s is unreadable; ignoring it", endpoint_id, key[:12])
            return None

    async def put(self, endpoint_id: str, key: str, completion: Completion, ttl_seconds: float) -> bool:
        text = json.dumps(completion.to_dict(), separators=(",", ":"))
        if len(text) > MAX_CHARS:
            log.debug("answer of %d characters not cached (limit %d)", len(text), MAX_CHARS)
            return False
        now = datetime.now(timezone.utc)
        try:
            await self._tables.upsert(TABLE, {
                "PartitionKey": endpoint_id, "RowKey": key, "completion": text, "model": completion.model,
                "adapter": completion.adapter, "stored": now, "expires": now + timedelta(seconds=ttl_seconds)})
        except Exception as error:
            log.warning("response cache write failed (%s); the answer is not cached", type(error).__name__)
            return False
        return True

    async def sweep(self, now: datetime | None = None) -> SweepReport:
        """Delete every entry expired by ``now``: one never read again would otherwise stay for good."""
        return await delete_rows_below(self._tables, TABLE, "expires", now or datetime.now(timezone.utc))


def _completion(data: dict[str, Any]) -> Completion:
    calls = [ToolCall(c["id"], c["name"], dict(c["arguments"])) for c in data.get("tool_calls") or []]
    usage = data.get("usage") or {}
    return Completion(
        content=data["content"], tool_calls=calls, provider=data["provider"], model=data["model"],
        usage=Usage(int(usage.get("prompt_tokens", 0)), int(usage.get("completion_tokens", 0))),
        endpoint=data.get("endpoint"), adapter=data.get("adapter"), fallback=data.get("fallback"),
        attempts=int(data.get("attempts", 1)))
