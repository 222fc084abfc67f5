"""The configs as they are on disk now, reloaded only when a file changes.

Requests and triggers ask for the current configs often; re-reading every file each time is
waste, and caching forever would miss a dropped-in config. A fingerprint of file names, sizes and
modification times decides (kept as a digest: ten thousand files' names need not stay in memory
twice).

Looking at ten thousand files and reloading the ones that changed takes a few hundred
milliseconds of CPU. Done by whichever caller asked, on an event loop, that held every other
turn, wake and request up for as long (round 16 of docs/performance.md), so once a set is
loaded the look runs on a thread of its own: readers keep getting the loaded set until the
look has replaced it, and ``fresh()`` lets an async caller wait for it without holding the loop.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import os
import threading
import time
from array import array
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from kernel.config.loader import ConfigSet, Unchanged, discover_files, file_stamp, load_configs

log = logging.getLogger("aos.config")
T = TypeVar("T")


class ConfigStore:
    def __init__(self, paths: Sequence[Path], *, recheck_seconds: float = 2.0) -> None:
        """``recheck_seconds``: how long a loaded set is trusted before the files are looked at
        again. Looking means one ``stat`` per file (10,000 agent files: 70-90 ms here), so the wait
        is also at least 20 times what looking last took: a large folder never costs more than 5 %
        of the time. 0 looks at every call, on the caller's thread (tests, tools)."""
        self._paths = list(paths)
        self._recheck_seconds = recheck_seconds
        self._trusted_for = recheck_seconds
        self._checked_at = float("-inf")
        self._fingerprint: str | None = None
        self._current: ConfigSet | None = None
        #: the stamp of each of the current set's files that loaded cleanly (0: not clean), in the
        #: order of its ``files``: a reload reads only the others. 8 bytes a file, not a dict entry.
        self._clean = array("q")
        self._lock = threading.Lock()  # one look at a time, on whichever thread
        self._looking: Future[ConfigSet] | None = None  # this store's look on the config thread

    def current(self, *, refresh: bool = False) -> ConfigSet:
        """The loaded configs, reloaded if any file was added, removed or changed. A loaded set is
        trusted for ``recheck_seconds``; after that the files are looked at on the config thread
        and this returns the set loaded so far, until the look replaces it. ``refresh`` looks now,
        on this thread. A reload reads and validates only the files that changed (one edit among
        10,000 agent files: a fraction of a full load)."""
        current = self._current
        if current is not None and not refresh and self._recheck_seconds > 0:
            if not self._trusted():
                self._look_behind()
            return current
        with self._lock:
            return self._refreshed(force=True)

    async def fresh(self, *, refresh: bool = False) -> ConfigSet:
        """The configs as of a look no older than ``recheck_seconds`` (now, with ``refresh``),
        waiting for the look on the config thread: the event loop goes on meanwhile."""
        if self._current is not None and not refresh and self._trusted():
            return self._current
        if refresh:
            return await on_config_thread(self._refreshed_locked, True)
        return await asyncio.wrap_future(self._look_behind())

    def _trusted(self) -> bool:
        return time.monotonic() - self._checked_at < self._trusted_for

    def _look_behind(self) -> Future[ConfigSet]:
        """The look running on the config thread, started if none is."""
        looking = self._looking
        if looking is None or looking.done():
            looking = self._looking = _looker().submit(self._refreshed_locked, False)
            looking.add_done_callback(_report_failure)
        return looking

    def _refreshed_locked(self, force: bool) -> ConfigSet:
        with self._lock:
            return self._refreshed(force=force)

    def _refreshed(self, *, force: bool) -> ConfigSet:
        """Look at the files (unless another look just did, or ``force``) and reload what changed."""
        if self._current is not None and not force and self._trusted():
            return self._current
        started = time.monotonic()
        try:
            fingerprint, stamps = self._look()
            looked = time.monotonic() - started
            if self._current is None or fingerprint != self._fingerprint:
                previous = self._current
                unchanged = None
                if previous is not None:
                    clean = {file: stamp for file, stamp in zip(previous.files, self._clean, strict=True) if stamp}
                    unchanged = Unchanged(previous, clean, stamps)
                loaded = load_configs(self._paths, unchanged=unchanged)
                if previous is not None:
                    _keep_last_good(loaded, previous)
                self._clean = _clean_files(loaded, stamps)
                self._fingerprint = fingerprint
                self._current = loaded
        finally:  # a failed look is tried again after the trust too, not at every read
            self._checked_at = time.monotonic()
        if self._recheck_seconds > 0:
            self._trusted_for = max(self._recheck_seconds, 20 * looked)
        return self._current

    def _look(self) -> tuple[str, dict[str, int]]:
        """The fingerprint of the files now, and each file's stamp."""
        digest = hashlib.blake2b(digest_size=16)
        stamps: dict[str, int] = {}
        for file in discover_files(self._paths, []):
            try:
                stat = os.stat(file)
            except OSError:
                continue
            stamps[file] = file_stamp(stat)
            digest.update(f"{file}\0{stat.st_mtime_ns}\0{stat.st_size}\n".encode())
        return digest.hexdigest(), stamps


def _report_failure(look: Future[ConfigSet]) -> None:
    """A look that failed leaves the loaded set in place; the next read after the trust tries again."""
    error = None if look.cancelled() else look.exception()
    if error is not None:
        log.error("config store: looking at the config files failed (%s: %s); the configs loaded before stay",
                  type(error).__name__, error)


@functools.lru_cache(maxsize=1)
def _looker() -> ThreadPoolExecutor:
    """The one thread all config work off the event loop runs on: every store's looks (seconds
    apart) and what is built from a reload. One thread, not a pool: each thread that allocates
    gets a C heap arena of its own, which keeps what it freed (a look at 10,000 files allocates
    about a megabyte), and a thread per store would leave one idle thread behind for every store
    a process ever made."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="aos-config")


async def on_config_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` on the config thread, awaited without holding the event loop."""
    return await asyncio.wrap_future(_looker().submit(fn, *args))


def _clean_files(loaded: ConfigSet, stamps: dict[str, int]) -> array:
    """For each of ``loaded.files``, its stamp if the set holds its document and it has no problem
    (a file a reload may take as it is), else 0."""
    troubled = {problem.file for problem in loaded.problems}
    held = {source.file for source in loaded.sources.values()}
    return array("q", (stamps.get(file, 0) if file in held and file not in troubled else 0 for file in loaded.files))


def _keep_last_good(loaded: ConfigSet, previous: ConfigSet) -> None:
    """Documents whose file is broken now stay as they last loaded (their problems are still
    reported): one bad edit must not take a running agent, or a server it uses, away."""
    broken = {problem.file for problem in loaded.errors}
    for (kind, doc_id), source in previous.sources.items():
        documents = loaded.by_kind(kind)
        if source.file in broken and doc_id not in documents:
            documents.adopt(doc_id, previous.by_kind(kind))
            loaded.sources[(kind, doc_id)] = source


@functools.lru_cache(maxsize=1)
def default_store() -> ConfigStore:
    """The process-wide store over AOS_CONFIG_PATHS, shared by every blueprint of the app."""
    from kernel import settings

    return ConfigStore(settings.config_paths())
