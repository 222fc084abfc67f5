"""Giving memory back to the operating system when the engine goes quiet after a burst of work.

A burst (ten thousand configure commands from a config sync, a thousand queued turns) leaves
memory the process no longer uses but still holds: SQLite keeps the pages it read in each
connection's page cache (up to 2 MiB per connection by default), and the C heap keeps freed
blocks, including SQLite's, until something returns them. CPython's own small-object arenas are
freed by CPython when they empty; nothing here touches them. After a burst of at least
``RELEASE_AFTER_RUNS`` episodes and entity batches, once nothing has been ready or running for
``RELEASE_AFTER_QUIET_SECONDS``, the engine drops the entity states it keeps parsed (after a
registration, sleeping agents' configs) and asks its SQLite connection to drop its page cache
(``PRAGMA shrink_memory``: the pages stay in the operating system's file cache and are read back
from there when next needed) and, on glibc, calls ``malloc_trim(0)`` to return the heap's free
pages; where the C library has no ``malloc_trim`` (musl, macOS, Windows) only the cache is dropped.
Nothing durable is touched: this is memory the process holds but no longer uses.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import sqlite3
from collections.abc import Callable, Iterable

log = logging.getLogger("aos.engine")

#: Episodes and entity batches since the last release that make the next quiet moment release
#: memory: a registration of ten thousand agents is about fifty thousand, a turn about seven.
RELEASE_AFTER_RUNS = 10_000
#: How long the engine must have had nothing to run before it releases: a config sync hands the
#: engine its commands a hundred at a time, and each pause between them is shorter than this.
RELEASE_AFTER_QUIET_SECONDS = 1.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim`` from the symbols the process has loaded (no library search), or None
    where the C library has none (musl, macOS, Windows)."""
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release(connections: Iterable[sqlite3.Connection]) -> None:
    """Drop ``connections``' page caches, then return the C heap's free pages (glibc only)."""
    for conn in connections:
        try:
            conn.execute("PRAGMA shrink_memory")
        except sqlite3.Error as error:  # a closed connection keeps nothing; a failure here loses nothing
            log.debug("PRAGMA shrink_memory failed: %s", error)
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
