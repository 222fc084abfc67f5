"""Deleting table rows past keeping: the loop the retention sweeps share.

Some tables only ever grow unless something removes what no longer matters: response cache
entries past their expiry, decided approvals, the gateway's tool-call claims once the turn that
made them is long over. Each such row carries a time property; a sweep finds the rows whose time
is below a bound (``TableStore.query_below``, a table scan, so it runs on a timer, never on a hot
path) and deletes each one only if it has not changed since it was read (its ETag): a row
rewritten meanwhile (a cache entry refreshed, a claim renewed) stays.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kernel.ports import NotFound, PreconditionFailed, TableStore

log = logging.getLogger("aos.sweep")
#: Rows read per query; the query repeats until nothing is left or the run's limit is reached.
BATCH = 500
#: Deletes in flight at once (each is a call to the table service in Azure).
CONCURRENT = 16
#: Rows one run deletes at most; the rest wait for the next run, so one run stays short.
MAX_PER_RUN = 50_000


@dataclass
class SweepReport:
    table: str
    deleted: int = 0
    #: rows that changed since they were read (kept) or whose delete failed (logged)
    kept: int = 0
    #: the run stopped at its limit: more is left for the next one
    more: bool = False


async def delete_rows_below(tables: TableStore, table: str, property_name: str, below: datetime | float, *,
                            limit: int = MAX_PER_RUN,
                            after_delete: Callable[[dict[str, Any]], Awaitable[None]] | None = None) -> SweepReport:
    """Delete the rows of ``table`` whose ``property_name`` is below ``below``, at most ``limit``.

    ``after_delete`` runs for each deleted row (a claim's result blob goes after its row, so a
    row never names a blob that is gone); its failure is logged and the sweep goes on."""
    report = SweepReport(table)
    budget = limit
    while budget > 0:
        rows = await tables.query_below(table, property_name, below, limit=min(BATCH, budget))
        if not rows:
            break
        deleted = 0
        for start in range(0, len(rows), CONCURRENT):
            chunk = rows[start:start + CONCURRENT]
            outcomes = await asyncio.gather(*(_delete(tables, table, row, after_delete) for row in chunk))
            deleted += sum(outcomes)
        report.deleted += deleted
        report.kept += len(rows) - deleted
        budget -= len(rows)
        if deleted == 0:  # every one changed since it was read: leave them for the next run
            break
    report.more = budget <= 0
    if report.deleted or report.kept:
        log.info("sweep of %s: %d rows with %s before %s deleted%s%s", table, report.deleted, property_name,
                 below.isoformat() if isinstance(below, datetime) else below,
                 f"; {report.kept} changed since read or failed, kept" if report.kept else "",
                 "; more left for the next run" if report.more else "")
    return report


async def _delete(tables: TableStore, table: str, row: dict[str, Any],
                  after_delete: Callable[[dict[str, Any]], Awaitable[None]] | None) -> bool:
    try:
        await tables.delete(table, row["PartitionKey"], row["RowKey"], etag=row["etag"])
    except (PreconditionFailed, NotFound):
        return False
    except Exception as error:  # noqa: BLE001 - one row's storage error must not stop the sweep
        log.warning("sweep of %s: row (%s, %s) not deleted (%s)", table, row["PartitionKey"], row["RowKey"],
                    type(error).__name__)
        return False
    if after_delete is not None:
        try:
            await after_delete(row)
        except Exception as error:  # noqa: BLE001
            log.warning("sweep of %s: cleanup after row (%s, %s) failed (%s)", table, row["PartitionKey"],
                        row["RowKey"], type(error).__name__)
    return True
