"""The configs as they are on disk now, reloaded only when a file changes.

Requests and triggers ask for the current configs often; re-reading every file each time is
waste, and caching forever would miss a dropped-in config. A fingerprint of file names, sizes and
modification times decides (kept as a digest: ten thousand files' names need not stay in memory
twice).
"""

from __future__ import annotations

import functools
import hashlib
import os
import time
from array import array
from pathlib import Path
from typing import Sequence

from kernel.config.loader import ConfigSet, Unchanged, discover_files, file_stamp, load_configs


class ConfigStore:
    def __init__(self, paths: Sequence[Path], *, recheck_seconds: float = 2.0) -> None:
        """``recheck_seconds``: how long a loaded set is trusted before the files are looked at
        again. Looking means one ``stat`` per file (10,000 agent files: 70-90 ms here), paid by
        whichever caller asks first, so the wait is also at least 20 times what looking last took:
        a large folder never costs more than 5 % of the time."""
        self._paths = list(paths)
        self._recheck_seconds = recheck_seconds
        self._trusted_for = recheck_seconds
        self._checked_at = float("-inf")
        self._fingerprint: str | None = None
        self._current: ConfigSet | None = None
        #: the stamp of each of the current set's files that loaded cleanly (0: not clean), in the
        #: order of its ``files``: a reload reads only the others. 8 bytes a file, not a dict entry.
        self._clean = array("q")

    def current(self, *, refresh: bool = False) -> ConfigSet:
        """The loaded configs, reloaded if any file was added, removed or changed (looked at
        most every ``recheck_seconds``, or now with ``refresh``). A reload reads and validates only
        the files that changed (one edit among 10,000 agent files: a fraction of a full load)."""
        now = time.monotonic()
        if self._current is not None and not refresh and now - self._checked_at < self._trusted_for:
            return self._current
        fingerprint, stamps = self._look()
        self._checked_at = time.monotonic()
        if self._recheck_seconds > 0:  # 0: look every time (tests, tools)
            self._trusted_for = max(self._recheck_seconds, 20 * (self._checked_at - now))
        if self._current is None or fingerprint != self._fingerprint:
            previous = self._current
            unchanged = None
            if previous is not None:
                clean = {file: stamp for file, stamp in zip(previous.files, self._clean, strict=True) if stamp}
                unchanged = Unchanged(previous, clean, stamps)
            loaded = load_configs(self._paths, unchanged=unchanged)
            if previous is not None:
                _keep_last_good(loaded, previous)
            self._current = loaded
            self._fingerprint = fingerprint
            self._clean = _clean_files(loaded, stamps)
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
