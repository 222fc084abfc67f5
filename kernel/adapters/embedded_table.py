"""``EmbeddedTableStore``: Azure Table storage semantics in one SQLite file.

Every table lives in one SQLite table keyed by (table, PartitionKey, RowKey); properties are
stored as typed JSON so that ``int``, ``float``, ``bool``, ``datetime`` and ``bytes`` come back
as they went in. Each write gets a fresh random ETag, so a stale ETag never matches again, even
after a delete and re-insert. Table names are case-insensitive, as in Azure.

Threading: a call runs on the caller's thread when SQLite can answer at once. A call on a local
file takes microseconds, far less than handing it to a thread and back (measured in
``docs/performance.md``: the hop, with the GIL handed over twice, cost more than the work). That
inline connection has no busy timeout: when another connection holds the write lock (another
process, or this store's own worker), the call fails fast with SQLITE_BUSY before writing
anything and is run again on the store's worker thread, whose connection waits up to the busy
timeout. So the event loop never waits on a lock, and a call is still a single SQLite statement
(or one statement plus a read), safe to run again when it did not write. Opening the file (which
may wait for another store switching it to WAL) is done on the worker thread too. The file is in
WAL mode, so other processes (or another store on the same file) can share it. The store's
SQLite tables are named ``aos_table_*`` and can live in the engine's state file.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar

from kernel.durability import check_sqlite_level
from kernel.ports import (
    AlreadyExists,
    NotFound,
    PreconditionFailed,
    check_below,
    check_entity,
    check_key,
    check_property_name,
    check_table_name,
)

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS aos_table_names (
    key TEXT PRIMARY KEY,
    name TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS aos_table_entities (
    tbl TEXT NOT NULL,
    pk TEXT NOT NULL,
    rk TEXT NOT NULL,
    etag TEXT NOT NULL,
    properties TEXT NOT NULL,
    PRIMARY KEY (tbl, pk, rk)
) WITHOUT ROWID;
"""


def _is_busy(error: sqlite3.OperationalError) -> bool:
    """SQLITE_BUSY or SQLITE_LOCKED: another connection holds a lock this statement needs."""
    return getattr(error, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED) or "locked" in str(error)


def _datetime_text(value: datetime) -> str:
    """How a datetime property is stored: fixed-width UTC text, which sorts as the instants do
    (``2026-11-22T09:01:02.345678Z``: six fractional digits always, and a four-digit year, which
    ``strftime`` left unpadded before the year 1000)."""
    return value.astimezone(timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse_datetime(text: str) -> datetime:
    """The inverse of ``_datetime_text``: ``fromisoformat`` reads it about ten times as fast as
    ``strptime`` (a scan of ten thousand rows with a timestamp each felt it)."""
    return datetime.fromisoformat(text)


def _new_etag() -> str:
    return f'W/"{uuid.uuid4().hex}"'


def _encode(entity: Mapping[str, Any]) -> str:
    encoded: dict[str, list[Any]] = {}
    for name, value in entity.items():
        if name in ("PartitionKey", "RowKey"):
            continue
        if isinstance(value, bool):
            encoded[name] = ["b", value]
        elif isinstance(value, int):
            encoded[name] = ["i", value]
        elif isinstance(value, float):
            encoded[name] = ["f", value]
        elif isinstance(value, str):
            encoded[name] = ["s", value]
        elif isinstance(value, datetime):
            encoded[name] = ["d", _datetime_text(value)]
        else:
            encoded[name] = ["x", base64.b64encode(value).decode("ascii")]
    return json.dumps(encoded, separators=(",", ":"), ensure_ascii=False)


def _decode(pk: str, rk: str, etag: str, properties: str) -> dict[str, Any]:
    entity: dict[str, Any] = {"PartitionKey": pk, "RowKey": rk}
    for name, (kind, value) in json.loads(properties).items():
        if kind == "d":
            value = _parse_datetime(value)
        elif kind == "x":
            value = base64.b64decode(value)
        elif kind == "f":
            value = float(value)
        entity[name] = value
    entity["etag"] = etag
    return entity


class EmbeddedTableStore:
    """The ``TableStore`` port on SQLite (a file path, or ``":memory:"``)."""

    def __init__(self, path: str | Path, *, busy_timeout_ms: int = 10_000, synchronous: str = "NORMAL") -> None:
        self.path = str(path)
        self._synchronous = check_sqlite_level(synchronous)
        self._busy_timeout_ms = busy_timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="aos-tables")
        self._conn: sqlite3.Connection | None = None
        self._inline: sqlite3.Connection | None = None
        self._inline_lock = threading.Lock()
        self._registered: set[str] = set()  # table keys whose name row this store has written
        self._closed = False

    # plumbing ---------------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(db, *args)`` inline when SQLite answers at once, else on the worker thread."""
        if self._closed:
            raise RuntimeError("the table store is closed")
        loop = asyncio.get_running_loop()
        if self._inline is None:
            await loop.run_in_executor(self._executor, self._open_inline)
        if self._inline_lock.acquire(blocking=False):  # another thread using it: take the worker's way
            try:
                return fn(self._inline, *args)
            except sqlite3.OperationalError as error:
                if not _is_busy(error):
                    raise
                if self._inline.in_transaction:
                    self._inline.rollback()
            finally:
                self._inline_lock.release()
        return await loop.run_in_executor(self._executor, self._on_worker, fn, args)

    def _on_worker(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        if self.path == ":memory:":  # one connection is the whole database: no second one to wait on
            with self._inline_lock:
                return fn(self._inline, *args)
        if self._conn is None:  # this connection waits up to the busy timeout for a lock
            self._conn = self._open()
        return fn(self._conn, *args)

    def _open_inline(self) -> None:
        """Open the inline connection (on the worker thread: opening may wait for the file)."""
        if self._inline is None:
            conn = self._open()
            conn.execute("PRAGMA busy_timeout=0")
            self._inline = conn

    def _open(self) -> sqlite3.Connection:
        """Connect and prepare the file. Several stores opening a new file at once race to switch it
        to WAL and create the schema; SQLite answers the losers 'database is locked' at once (the
        busy timeout does not cover a journal-mode change), so they retry until the timeout."""
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        deadline = time.monotonic() + self._busy_timeout_ms / 1000
        while True:
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            try:
                conn.execute(f"PRAGMA busy_timeout={int(self._busy_timeout_ms)}")
                if self.path != ":memory:":
                    if str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower() != "wal":
                        conn.execute("PRAGMA journal_mode=WAL")
                    conn.execute(f"PRAGMA synchronous={self._synchronous}")
                conn.executescript(_SCHEMA)
                return conn
            except sqlite3.OperationalError as error:
                conn.close()
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(random.uniform(0.005, 0.05))

    def _register(self, db: sqlite3.Connection, table: str) -> str:
        """Record the table's name on its first write from this store (rows are never removed, so
        once is enough: a write each time cost a statement and a lock per entity written)."""
        key = check_table_name(table).lower()
        if key not in self._registered:
            db.execute("INSERT OR IGNORE INTO aos_table_names (key, name) VALUES (?, ?)", (key, table))
            self._registered.add(key)
        return key

    def _state(self, db: sqlite3.Connection, key: str, pk: str, rk: str) -> str | None:
        row = db.execute("SELECT etag FROM aos_table_entities WHERE tbl=? AND pk=? AND rk=?", (key, pk, rk)).fetchone()
        return None if row is None else row[0]

    # port -------------------------------------------------------------------------------------
    async def insert(self, table: str, entity: Mapping[str, Any]) -> str:
        checked = check_entity(entity)
        return await self._run(self._insert, table, checked)

    def _insert(self, db: sqlite3.Connection, table: str, entity: dict[str, Any]) -> str:
        etag = _new_etag()
        key = self._register(db, table)
        try:
            db.execute("INSERT INTO aos_table_entities (tbl, pk, rk, etag, properties) VALUES (?, ?, ?, ?, ?)",
                       (key, entity["PartitionKey"], entity["RowKey"], etag, _encode(entity)))
        except sqlite3.IntegrityError:
            raise AlreadyExists(
                f"entity ({entity['PartitionKey']!r}, {entity['RowKey']!r}) already exists in table {table}"
            ) from None
        return etag

    async def upsert(self, table: str, entity: Mapping[str, Any]) -> str:
        checked = check_entity(entity)
        return await self._run(self._upsert, table, checked)

    def _upsert(self, db: sqlite3.Connection, table: str, entity: dict[str, Any]) -> str:
        etag = _new_etag()
        key = self._register(db, table)
        db.execute(
            "INSERT INTO aos_table_entities (tbl, pk, rk, etag, properties) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (tbl, pk, rk) DO UPDATE SET etag=excluded.etag, properties=excluded.properties",
            (key, entity["PartitionKey"], entity["RowKey"], etag, _encode(entity)),
        )
        return etag

    async def update(self, table: str, entity: Mapping[str, Any], *, etag: str) -> str:
        checked = check_entity(entity)
        if not etag:
            raise ValueError("update needs the etag the entity was read with")
        return await self._run(self._update, check_table_name(table), checked, etag)

    def _update(self, db: sqlite3.Connection, table: str, entity: dict[str, Any], etag: str) -> str:
        new = _new_etag()
        pk, rk = entity["PartitionKey"], entity["RowKey"]
        changed = db.execute(
            "UPDATE aos_table_entities SET etag=?, properties=? WHERE tbl=? AND pk=? AND rk=? AND etag=?",
            (new, _encode(entity), table.lower(), pk, rk, etag),
        ).rowcount
        if changed:
            return new
        if self._state(db, table.lower(), pk, rk) is None:
            raise NotFound(f"entity ({pk!r}, {rk!r}) not found in table {table}")
        raise PreconditionFailed(f"entity ({pk!r}, {rk!r}) in table {table} changed since it was read (etag mismatch)")

    async def get(self, table: str, partition_key: str, row_key: str) -> dict[str, Any]:
        check_table_name(table)
        check_key(partition_key, "PartitionKey")
        check_key(row_key, "RowKey")
        return await self._run(self._get, table, partition_key, row_key)

    def _get(self, db: sqlite3.Connection, table: str, pk: str, rk: str) -> dict[str, Any]:
        row = db.execute(
            "SELECT pk, rk, etag, properties FROM aos_table_entities WHERE tbl=? AND pk=? AND rk=?",
            (table.lower(), pk, rk),
        ).fetchone()
        if row is None:
            raise NotFound(f"entity ({pk!r}, {rk!r}) not found in table {table}")
        return _decode(*row)

    async def delete(self, table: str, partition_key: str, row_key: str, *, etag: str | None = None) -> None:
        check_table_name(table)
        check_key(partition_key, "PartitionKey")
        check_key(row_key, "RowKey")
        await self._run(self._delete, table, partition_key, row_key, etag)

    def _delete(self, db: sqlite3.Connection, table: str, pk: str, rk: str, etag: str | None) -> None:
        sql = "DELETE FROM aos_table_entities WHERE tbl=? AND pk=? AND rk=?"
        params: tuple[str, ...] = (table.lower(), pk, rk)
        if etag is not None:
            sql, params = sql + " AND etag=?", params + (etag,)
        if db.execute(sql, params).rowcount == 0 and etag is not None and self._state(db, table.lower(), pk, rk):
            raise PreconditionFailed(f"entity ({pk!r}, {rk!r}) in table {table} changed since it was read (etag mismatch)")

    async def query(self, table: str, partition_key: str, *, row_key_from: str | None = None,
                    row_key_to: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        check_table_name(table)
        check_key(partition_key, "PartitionKey")
        if limit is not None and limit < 1:
            raise ValueError("limit must be a positive number")
        return await self._run(self._query, table, partition_key, row_key_from, row_key_to, limit)

    def _query(self, db: sqlite3.Connection, table: str, pk: str, start: str | None, stop: str | None, limit: int | None) -> list[dict[str, Any]]:
        sql = "SELECT pk, rk, etag, properties FROM aos_table_entities WHERE tbl=? AND pk=?"
        params: list[Any] = [table.lower(), pk]
        if start is not None:
            sql, params = sql + " AND rk >= ?", params + [start]
        if stop is not None:
            sql, params = sql + " AND rk < ?", params + [stop]
        sql += " ORDER BY rk"
        if limit is not None:
            sql, params = sql + " LIMIT ?", params + [limit]
        return [_decode(*row) for row in db.execute(sql, params)]

    async def query_below(self, table: str, property_name: str, below: datetime | float, *,
                          limit: int | None = None) -> list[dict[str, Any]]:
        check_table_name(table)
        check_property_name(property_name)
        below = check_below(below)
        if limit is not None and limit < 1:
            raise ValueError("limit must be a positive number")
        return await self._run(self._query_below, table, property_name, below, limit)

    def _query_below(self, db: sqlite3.Connection, table: str, name: str, below: datetime | float,
                     limit: int | None) -> list[dict[str, Any]]:
        # Properties are stored as {"name": [kind, value]} (see _encode).
        if isinstance(below, datetime):
            kinds, bound = ("d",), _datetime_text(below)
        else:
            kinds, bound = ("i", "f"), below
        sql = (f"SELECT pk, rk, etag, properties FROM aos_table_entities WHERE tbl=? "
               f"AND json_extract(properties, ?) IN ({','.join('?' * len(kinds))}) AND json_extract(properties, ?) < ?")
        params: list[Any] = [table.lower(), f'$."{name}"[0]', *kinds, f'$."{name}"[1]', bound]
        if limit is not None:
            sql, params = sql + " LIMIT ?", params + [limit]
        return [_decode(*row) for row in db.execute(sql, params)]

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._inline_lock:
            if self._inline is not None:
                self._inline.close()
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._executor, self._conn.close)
        self._executor.shutdown(wait=True)
