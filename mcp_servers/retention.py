"""Tool-call claims leave the gateway's table, with their result blobs, after the history retention.

A claim (``mcp_servers.gateway``: table ``toolcalls``, one row per call id, a blob for a result
over 30,000 characters) exists so that a turn replayed or redelivered gets the result of a call
already made instead of making it again. That only matters while the turn can still run again,
and a turn whose Durable history the realm has purged (``AOS_HISTORY_RETENTION_DAYS``) cannot
resume anyway. So an hourly timer deletes the claims made more than the retention ago (none when
it is 0), each only if unchanged since it was read, and then the blob it named.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

from kernel.ports import BlobStore, NotFound, TableStore
from kernel.sweep import SweepReport, delete_rows_below
from realm_of_agents.retention import retention


async def sweep_claims(tables: TableStore, blobs: BlobStore, *, now: datetime | None = None,
                       environ: Mapping[str, str] | None = None) -> SweepReport | None:
    """Delete the claims older than the retention and their result blobs; ``None`` when it is 0."""
    # Imported here: the gateway loads the MCP SDK, which the app only imports when it is used.
    from mcp_servers.gateway import CALLS_CONTAINER, CLAIMS_TABLE

    kept = retention(environ)
    if kept is None:
        return None
    cutoff = (now or datetime.now(timezone.utc)) - kept

    async def delete_blob(row: dict[str, Any]) -> None:
        if row.get("result_blob"):
            try:
                await blobs.delete(CALLS_CONTAINER, row["result_blob"])
            except NotFound:
                pass

    # A claim's "at" is when it was made (or taken over), in seconds since the epoch.
    return await delete_rows_below(tables, CLAIMS_TABLE, "at", cutoff.timestamp(), after_delete=delete_blob)
