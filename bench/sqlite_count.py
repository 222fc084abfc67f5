"""How many SQLite transactions a system commits per event: a count that a noisy machine cannot blur.

Every system measured here keeps its state in SQLite, and how often it commits is part of what
its durability costs. Times move with the machine; the number of commits does not. A
:class:`CommitCounter` notes every connection opened through ``sqlite3.connect`` while it is
installed (the platform opens its own, deep inside), and counts, only while :meth:`counting`
is active, the transactions they commit: each ``COMMIT`` (or ``END``), and each write run
outside an open transaction, which SQLite commits on its own. The trace callback costs a Python
call per statement, so the timed runs happen with it off and the count is a separate pass.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Iterator
from typing import Any

#: Events in a counting pass (fewer when a run's burst is smaller).
COUNTED_EVENTS = 100
#: Statements that write: run outside a transaction, each is one commit.
_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER")
_ENDS = ("COMMIT", "END")


class CommitCounter:
    """Notes the connections opened while installed; counts their commits while counting."""

    def __init__(self) -> None:
        self.commits = 0
        self._connections: list[sqlite3.Connection] = []  # not weak-referenceable: pruned when closed
        self._connect: Any = None
        self._lock = threading.Lock()  # the platform's table store commits from worker threads too

    def install(self) -> CommitCounter:
        """Wrap ``sqlite3.connect`` so that every new connection is noted (no cost per statement)."""
        real = self._connect = sqlite3.connect

        def connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
            connection = real(*args, **kwargs)
            self.watch(connection)
            return connection

        sqlite3.connect = connect  # type: ignore[assignment]
        return self

    def uninstall(self) -> None:
        if self._connect is not None:
            sqlite3.connect = self._connect
            self._connect = None

    def watch(self, connection: sqlite3.Connection) -> None:
        """Count ``connection`` too (one opened before the counter was installed)."""
        self._connections = [known for known in self._connections if _open(known)]
        self._connections.append(connection)

    @contextlib.contextmanager
    def counting(self) -> Iterator[CommitCounter]:
        """Count the commits of every noted connection inside the block (``self.commits``)."""
        self.commits = 0
        connections = [known for known in self._connections if _open(known)]
        for connection in connections:
            connection.set_trace_callback(self._tracer(connection))
        try:
            yield self
        finally:
            for connection in connections:
                with contextlib.suppress(sqlite3.ProgrammingError):  # closed meanwhile
                    connection.set_trace_callback(None)

    def per_event(self, events: int) -> float:
        """The last pass's commits per event, as the bench reports them."""
        return round(self.commits / events, 2)

    def _tracer(self, connection: sqlite3.Connection) -> Any:
        def trace(statement: str) -> None:
            word = statement.lstrip().split(None, 1)[0].upper() if statement.strip() else ""
            if word in _ENDS or (word in _WRITES and not connection.in_transaction):
                with self._lock:
                    self.commits += 1

        return trace


def _open(connection: sqlite3.Connection) -> bool:
    try:
        connection.total_changes  # noqa: B018 - raises on a closed connection
    except sqlite3.ProgrammingError:
        return False
    return True
