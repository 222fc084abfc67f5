"""How durable the embedded platform's local state is: the ``AOS_EMBEDDED_SYNC`` setting.

One setting for every local store, so they give one guarantee together:

* ``normal`` (default): every acknowledged step (a committed engine episode, a table write, a
  blob write) survives the process being killed. A power cut or OS crash can lose the last ones.
  SQLite runs WAL with ``synchronous=NORMAL`` (engine state, tables); blob files are renamed into
  place without ``fsync``.
* ``full``: also survives a power cut. SQLite ``synchronous=FULL`` (the WAL is synced at every
  commit); blob files are ``fsync``ed before they are renamed into place.

Azure storage and Service Bus are not affected: this only names the embedded stand-ins'
guarantee. ``docs/performance.md`` has what each costs.
"""

from __future__ import annotations

SETTING = "AOS_EMBEDDED_SYNC"
NORMAL, FULL = "normal", "full"
MODES = (NORMAL, FULL)


def sync_mode(value: str | None) -> str:
    """The setting's value (``normal`` when unset); a clear error naming the setting otherwise."""
    mode = (value or "").strip().lower() or NORMAL
    if mode not in MODES:
        raise ValueError(f"setting {SETTING}={value!r}: expected 'normal' (state survives a killed process) or "
                         "'full' (also a power cut: SQLite synchronous=FULL and fsync on every blob write)")
    return mode


#: The SQLite ``synchronous`` levels the modes use.
SQLITE_LEVELS = ("NORMAL", "FULL")


def check_sqlite_level(level: str) -> str:
    """``level`` if it is one of ``SQLITE_LEVELS`` (it goes into a PRAGMA), else a ValueError."""
    if level not in SQLITE_LEVELS:
        raise ValueError(f"synchronous must be one of {', '.join(SQLITE_LEVELS)}, not {level!r}")
    return level


def sqlite_synchronous(mode: str) -> str:
    """The SQLite ``synchronous`` pragma value for ``mode``."""
    return "FULL" if mode == FULL else "NORMAL"
