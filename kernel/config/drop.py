"""Configs dropped into a blob container, mirrored to a local folder the config loader reads.

In Azure the app's files are read-only and every instance loads its own configs, so a config
dropped at run time has to reach every instance: each one mirrors the container
(``AOS_CONFIG_CONTAINER``) into its state folder (``kernel.settings.config_drop_dir``) at most
every ``interval`` seconds, and the ``ConfigStore`` sees the files change like any other. Only
config files (.json, .yaml, .yml) are mirrored; a blob that disappears is removed locally, which
retires its agent at the next sync. The realm and MCP apps mirror through their services; the
kernel app's functions read their configs through ``current_configs`` here, which does the same.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from pathlib import Path

from kernel.adapters import redact
from kernel.config.loader import CONFIG_SUFFIXES, ConfigSet
from kernel.ports import BlobStore, NotFound

log = logging.getLogger("aos.config")

#: Seconds between two mirrors of the container by one process, unless a caller forces one.
MIRROR_INTERVAL = 30.0


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

    def __init__(self, blobs: BlobStore, container: str, directory: Path, interval: float = MIRROR_INTERVAL) -> None:
        self.blobs, self.container, self.directory, self.interval = blobs, container, directory, interval
        self._last = float("-inf")

    async def refresh(self, *, force: bool = False) -> list[str]:
        if not force and time.monotonic() - self._last < self.interval:
            return []
        self._last = time.monotonic()
        return await mirror(self.blobs, self.container, self.directory)


#: When each event loop last mirrored each (container, folder): the kernel's functions run on the
#: loop's own adapters (``kernel.runtime``), which a closed platform replaces, so none is kept here.
_mirrored_at: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[tuple[str, Path], float]] = \
    weakref.WeakKeyDictionary()


async def current_configs(*, refresh: bool = False) -> ConfigSet:
    """The process's configs (``default_store()``). With AOS_CONFIG_CONTAINER set, the container is
    mirrored first, at most every ``MIRROR_INTERVAL`` seconds unless ``refresh``; when that changed a
    file, or with ``refresh``, the files are looked at now (on the config thread). A mirror that
    fails is logged and the configs on disk are used: a storage outage must not fail a health
    probe or a workflow trigger that has configs to go on with."""
    from kernel import runtime, settings
    from kernel.config.store import default_store

    store = default_store()
    container = settings.get("AOS_CONFIG_CONTAINER")
    if container:
        directory = settings.config_drop_dir()
        last = _mirrored_at.setdefault(asyncio.get_running_loop(), {})
        now = time.monotonic()
        if refresh or now - last.get((container, directory), float("-inf")) >= MIRROR_INTERVAL:
            last[(container, directory)] = now
            try:
                if await mirror(runtime.adapters().blobs, container, directory):
                    refresh = True
            except Exception as error:  # noqa: BLE001 - the configs on disk still serve; tried again later
                log.warning("config drop: mirroring container '%s' failed (%s: %s); the configs already on disk "
                            "are used", container, type(error).__name__, redact(str(error))[:200])
    return await store.fresh(refresh=True) if refresh else store.current()
