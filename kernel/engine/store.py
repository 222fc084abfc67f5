"""SQLite persistence for instances, histories, entity state and pending work.

One connection, ``isolation_level=None``, WAL for files. The engine groups many episodes into
one transaction per scheduler tick; every change a tick makes (history appended, messages
consumed and produced, activities scheduled) commits together or not at all, which is what makes
a killed process resume without losing or duplicating orchestration steps.
"""

from __future__ import annotations

import json
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

from kernel.durability import check_sqlite_level

from .records import dumps

SCHEMA = """
CREATE TABLE IF NOT EXISTS df_instances (
    instance_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    status TEXT NOT NULL,
    input TEXT,
    output TEXT,
    custom_status TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    state TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS df_instances_created ON df_instances(created_at);
-- A rowid table: new events land at the table's right edge and events of several kilobytes fit
-- a page. (Files made before round 13 keep the WITHOUT ROWID layout, which works the same and
-- writes more WAL pages per turn: see docs/performance.md, "Round 13".)
CREATE TABLE IF NOT EXISTS df_history (
    instance_id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    event TEXT NOT NULL,
    PRIMARY KEY (instance_id, idx)
);
CREATE TABLE IF NOT EXISTS df_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    target TEXT NOT NULL,
    due_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS df_activities (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    instance_id TEXT NOT NULL,
    execution_id TEXT NOT NULL,
    task_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    input TEXT
);
CREATE TABLE IF NOT EXISTS df_entities (
    entity_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    key TEXT NOT NULL,
    exists_ INTEGER NOT NULL,
    state TEXT,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS df_timer_triggers (
    function TEXT PRIMARY KEY,
    next_fire TEXT NOT NULL,
    last_fire TEXT
);
"""


#: Ids per ``IN (...)`` query, well inside SQLite's limit on bound parameters.
_IN_CHUNK = 500


def connect(path: str | None, synchronous: str = "NORMAL") -> sqlite3.Connection:
    """Open the engine's connection: in-memory when ``path`` is None, else a WAL file
    (``synchronous``: NORMAL or FULL, see ``kernel/durability.py``)."""
    check_sqlite_level(synchronous)
    conn = sqlite3.connect(path or ":memory:", isolation_level=None, check_same_thread=False)
    if path:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
    conn.execute("PRAGMA foreign_keys=OFF")
    return conn


@dataclass
class InstanceRow:
    instance_id: str
    name: str
    execution_id: str
    status: str
    input: str | None
    output: str | None
    custom_status: str | None
    created_at: str
    updated_at: str
    state: dict[str, Any]


@dataclass
class MessageRow:
    id: int
    kind: str
    target: str
    due_at: str
    #: None while the body is in the store only (see ``Engine``: the mirror keeps a bounded number)
    body: dict[str, Any] | None


@dataclass
class ActivityRow:
    id: int
    instance_id: str
    execution_id: str
    task_id: int
    name: str
    input: str | None


class Store:
    """Typed access to the engine's tables on a shared connection."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        conn.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT; joins an already open transaction instead of nesting."""
        if self.conn.in_transaction:
            yield
            return
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    # instances -------------------------------------------------------------------------------
    def save_instance(self, row: InstanceRow) -> None:
        self.conn.execute(
            "INSERT OR REPLACE INTO df_instances VALUES (?,?,?,?,?,?,?,?,?,?)",
            (row.instance_id, row.name, row.execution_id, row.status, row.input, row.output,
             row.custom_status, row.created_at, row.updated_at, dumps(row.state)),
        )

    def load_instance(self, instance_id: str) -> InstanceRow | None:
        cur = self.conn.execute("SELECT * FROM df_instances WHERE instance_id=?", (instance_id,))
        found = cur.fetchone()
        return _instance(found) if found else None

    def query_instances(self, *, created_from: str | None = None, created_to: str | None = None,
                        statuses: Sequence[str] | None = None, prefix: str | None = None) -> list[InstanceRow]:
        where, args = _instance_filter(created_from, created_to, statuses, prefix)
        return [_instance(r) for r in self.conn.execute(f"SELECT * FROM df_instances WHERE {where} ORDER BY created_at", args)]

    def instance_ids(self, *, created_from: str | None = None, created_to: str | None = None,
                     statuses: Sequence[str]) -> list[str]:
        """Ids of the instances in ``statuses`` created in the window: what a purge needs, without
        reading (and parsing) each row."""
        if not statuses:
            return []
        where, args = _instance_filter(created_from, created_to, statuses, None)
        return [r[0] for r in self.conn.execute(f"SELECT instance_id FROM df_instances WHERE {where}", args)]

    def delete_instances(self, instance_ids: Sequence[str]) -> None:
        """Delete these instances and their histories, ``_IN_CHUNK`` ids per statement."""
        for start in range(0, len(instance_ids), _IN_CHUNK):
            chunk = list(instance_ids[start:start + _IN_CHUNK])
            marks = ",".join("?" * len(chunk))
            self.conn.execute(f"DELETE FROM df_history WHERE instance_id IN ({marks})", chunk)
            self.conn.execute(f"DELETE FROM df_instances WHERE instance_id IN ({marks})", chunk)

    def delete_instance(self, instance_id: str) -> None:
        self.delete_instances([instance_id])

    # history ---------------------------------------------------------------------------------
    def append_history(self, instance_id: str, start: int, events: Sequence[str]) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO df_history VALUES (?,?,?)",
            [(instance_id, start + i, ev) for i, ev in enumerate(events)],
        )

    def load_history(self, instance_id: str) -> list[str]:
        cur = self.conn.execute("SELECT event FROM df_history WHERE instance_id=? ORDER BY idx", (instance_id,))
        return [r[0] for r in cur]

    def clear_history(self, instance_id: str) -> None:
        self.conn.execute("DELETE FROM df_history WHERE instance_id=?", (instance_id,))

    # messages --------------------------------------------------------------------------------
    def add_message(self, kind: str, target: str, due_at: str, body: dict[str, Any]) -> int:
        cur = self.conn.execute(
            "INSERT INTO df_messages (kind, target, due_at, body) VALUES (?,?,?,?)",
            (kind, target, due_at, dumps(body)),
        )
        return int(cur.lastrowid or 0)

    def delete_messages(self, ids: Sequence[int]) -> None:
        if ids:
            self.conn.executemany("DELETE FROM df_messages WHERE id=?", [(i,) for i in ids])

    def delete_messages_for(self, kind: str, target: str) -> None:
        self.conn.execute("DELETE FROM df_messages WHERE kind=? AND target=?", (kind, target))

    def load_messages(self, bodies: int | None = None, *, always: frozenset[str] = frozenset()) -> list[MessageRow]:
        """Every pending message, oldest first; past the first ``bodies`` of them (all when None),
        a message's body is left in the store (``None``) unless its target is in ``always``."""
        cur = self.conn.execute("SELECT id, kind, target, due_at, body FROM df_messages ORDER BY id")
        rows = []
        for n, r in enumerate(cur):
            parse = bodies is None or n < bodies or r[2] in always
            rows.append(MessageRow(r[0], r[1], r[2], r[3], json.loads(r[4]) if parse else None))
        return rows

    def message_bodies(self, ids: Sequence[int]) -> dict[int, dict[str, Any]]:
        """The bodies of pending messages ``ids`` (those that still exist), by id."""
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start:start + _IN_CHUNK]
            cur = self.conn.execute(f"SELECT id, body FROM df_messages WHERE id IN ({','.join('?' * len(chunk))})", chunk)
            found.update((r[0], json.loads(r[1])) for r in cur)
        return found

    # activities ------------------------------------------------------------------------------
    def add_activity(self, instance_id: str, execution_id: str, task_id: int, name: str, input_: str | None) -> int:
        cur = self.conn.execute(
            "INSERT INTO df_activities (instance_id, execution_id, task_id, name, input) VALUES (?,?,?,?,?)",
            (instance_id, execution_id, task_id, name, input_),
        )
        return int(cur.lastrowid or 0)

    def delete_activity(self, activity_id: int) -> None:
        self.conn.execute("DELETE FROM df_activities WHERE id=?", (activity_id,))

    def load_activities(self) -> list[ActivityRow]:
        cur = self.conn.execute("SELECT id, instance_id, execution_id, task_id, name, input FROM df_activities ORDER BY id")
        return [ActivityRow(*r) for r in cur]

    # entities --------------------------------------------------------------------------------
    def load_entity(self, entity_id: str) -> tuple[bool, str | None] | None:
        found = self.conn.execute("SELECT exists_, state FROM df_entities WHERE entity_id=?", (entity_id,)).fetchone()
        return (bool(found[0]), found[1]) if found else None

    def save_entity(self, entity_id: str, name: str, key: str, exists: bool, state: str | None, updated_at: str) -> None:
        if not exists:
            self.conn.execute("DELETE FROM df_entities WHERE entity_id=?", (entity_id,))
            return
        self.conn.execute(
            "INSERT OR REPLACE INTO df_entities VALUES (?,?,?,?,?,?)",
            (entity_id, name, key, 1, state, updated_at),
        )

    # timer triggers --------------------------------------------------------------------------
    def load_timer(self, function: str) -> tuple[str, str | None] | None:
        found = self.conn.execute("SELECT next_fire, last_fire FROM df_timer_triggers WHERE function=?", (function,)).fetchone()
        return (found[0], found[1]) if found else None

    def save_timer(self, function: str, next_fire: str, last_fire: str | None) -> None:
        self.conn.execute("INSERT OR REPLACE INTO df_timer_triggers VALUES (?,?,?)", (function, next_fire, last_fire))


def _instance(r: Sequence[Any]) -> InstanceRow:
    return InstanceRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], r[8], json.loads(r[9]))


def _instance_filter(created_from: str | None, created_to: str | None, statuses: Sequence[str] | None,
                     prefix: str | None) -> tuple[str, list[Any]]:
    """The WHERE clause (and its arguments) of an instance query: every condition given applies."""
    where, args = ["1=1"], []
    if created_from:
        where.append("created_at >= ?")
        args.append(created_from)
    if created_to:
        where.append("created_at <= ?")
        args.append(created_to)
    if statuses:
        where.append(f"status IN ({','.join('?' * len(statuses))})")
        args.extend(statuses)
    if prefix:
        where.append("substr(instance_id, 1, ?) = ?")
        args.extend([len(prefix), prefix])
    return " AND ".join(where), args
