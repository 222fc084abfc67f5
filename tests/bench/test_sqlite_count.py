"""The bench's commit counter, on real SQLite files: what it counts is what SQLite commits."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

from bench.sqlite_count import CommitCounter


def test_it_counts_each_transaction_committed_and_nothing_else(tmp_path: Path) -> None:
    real = sqlite3.connect
    counter = CommitCounter().install()
    try:
        explicit = sqlite3.connect(tmp_path / "a.sqlite", isolation_level=None)  # as the engine opens its file
        legacy = sqlite3.connect(tmp_path / "b.sqlite")  # Python's implicit BEGIN, as LangGraph's saver uses it
    finally:
        counter.uninstall()
    assert sqlite3.connect is real  # put back
    for connection in (explicit, legacy):
        connection.execute("CREATE TABLE t (x)")
    legacy.commit()
    with counter.counting():
        explicit.execute("INSERT INTO t VALUES (1)")  # on its own: SQLite commits it
        explicit.executemany("INSERT INTO t VALUES (?)", [(2,), (3,)])  # two statements, two commits
        explicit.execute("BEGIN IMMEDIATE")
        explicit.execute("INSERT INTO t VALUES (4)")
        explicit.execute("UPDATE t SET x = x + 1")
        explicit.execute("COMMIT")  # one transaction for both
        explicit.execute("SELECT COUNT(*) FROM t").fetchone()  # a read commits nothing
        legacy.execute("INSERT INTO t VALUES (1)")
        legacy.execute("INSERT INTO t VALUES (2)")
        legacy.commit()  # one
        legacy.commit()  # nothing open: nothing committed
    assert counter.commits == 5
    with counter.counting():
        pass
    assert counter.commits == 0  # each pass counts from zero
    explicit.execute("INSERT INTO t VALUES (5)")  # outside a pass: no trace left behind
    assert counter.commits == 0
    explicit.close()
    with counter.counting():  # a closed connection is skipped, the others still counted
        legacy.execute("INSERT INTO t VALUES (3)")
        legacy.commit()
    assert counter.commits == 1
    legacy.close()


def test_commits_from_worker_threads_are_counted(tmp_path: Path) -> None:
    counter = CommitCounter()
    connection = sqlite3.connect(tmp_path / "c.sqlite", isolation_level=None, check_same_thread=False)
    connection.execute("CREATE TABLE t (x)")
    counter.watch(connection)
    lock = threading.Lock()

    def write(n: int) -> None:
        with lock:  # one connection: one statement at a time, as the table store does
            connection.execute("INSERT INTO t VALUES (?)", (n,))

    with counter.counting():
        threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert counter.commits == 8
    connection.close()
