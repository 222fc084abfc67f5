"""Reading a whole table partition a page at a time.

A sync over ten thousand agents compares each declared document with its row. Reading the
partition whole holds ten thousand row dicts at once (about 1 KB each), and the allocator keeps
that peak long after the rows are gone; a page at a time keeps the peak to one page's rows.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from kernel.ports import NotFound, TableStore

#: Rows read per query: one round trip per page against Azure Tables (whose own page is 1,000).
PAGE_ROWS = 500


async def rows_in_order(tables: TableStore, table: str, partition: str, *,
                        page: int | None = None) -> AsyncIterator[dict[str, Any]]:
    """Every row of ``partition`` in the store's RowKey order, one page (``PAGE_ROWS`` unless
    given) in memory at a time; a missing table has no rows.

    Each page starts at the previous page's last RowKey (the store's own order decides what comes
    after it). Rows the caller writes at or before the row it was given are not read again, so a
    caller may update or delete the row it is looking at; a row created further on while the
    scan runs is read when the scan reaches it. The event loop gets a turn between pages."""
    page = page or PAGE_ROWS
    start: str | None = None
    while True:
        try:
            # after the first page, one more row: the previous page's last, skipped below
            rows = await tables.query(table, partition, row_key_from=start, limit=page if start is None else page + 1)
        except NotFound:
            return
        if start is not None and rows and rows[0]["RowKey"] == start:
            rows = rows[1:]  # the previous page's last row
        for row in rows:
            yield row
        if len(rows) < page:
            return
        start = rows[-1]["RowKey"]
        # The embedded store answers without suspending: without this, a scan of ten thousand
        # rows would hold the event loop (every turn and request) from its first page to its last.
        await asyncio.sleep(0)
