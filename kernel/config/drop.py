"""Configs dropped into a blob container, mirrored to a local folder the config loader reads.

In Azure the app's files are read-only and every instance loads its own configs, so a config
dropped at run time has to reach every instance: each one mirrors the container
(``AOS_CONFIG_CONTAINER``) into its state folder (``kernel.settings.config_drop_dir``) at most
every ``interval`` seconds, and the ``ConfigStore`` sees the files change like any other. Only
config files (.json, .yaml, .yml) are mirrored; a blob that disappears is removed locally, which
retires its agent at the next sync.
"""

from __future__ import annotations

import time
from pathlib import Path

from kernel.config.loader import CONFIG_SUFFIXES
from kernel.ports import BlobStore, NotFound


async def mirror(blobs: BlobStore, container: str, directory: Path) -> list[str]:
    """Make ``directory`` hold exactly the container's config blobs; returns the names that changed."""
    directory.mkdir(parents=True, exist_ok=True)
    wanted = [name for name in await blobs.list(container) if Path(name).suffix in CONFIG_SUFFIXES and "/" not in name]
    changed = []
    for name in wanted:
        try:
            data = await blobs.get(container, name)
        except NotFound:  # deleted between list and get
            continue
        target = directory / name
        if not target.is_file() or target.read_bytes() != data:
            temporary = target.with_name(f".{name}.tmp")
            temporary.write_bytes(data)
            temporary.replace(target)
            changed.append(name)
    for stale in directory.iterdir():
        if stale.is_file() and not stale.name.startswith(".") and stale.name not in wanted:
            stale.unlink()
            changed.append(stale.name)
    return changed


class Mirror:
    """Rate-limited mirroring for one process (``refresh`` is cheap when called often)."""

    def __init__(self, blobs: BlobStore, container: str, directory: Path, interval: float = 30.0) -> None:
        self.blobs, self.container, self.directory, self.interval = blobs, container, directory, interval
        self._last = float("-inf")

    async def refresh(self, *, force: bool = False) -> list[str]:
        if not force and time.monotonic() - self._last < self.interval:
            return []
        self._last = time.monotonic()
        return await mirror(self.blobs, self.container, self.directory)
