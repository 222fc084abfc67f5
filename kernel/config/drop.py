"""Configs dropped into a blob container, mirrored to a local folder the config loader reads.

In Azure the app's files are read-only and every instance loads its own configs, so a config
dropped at run time has to reach every instance: each one mirrors the container
(``AOS_CONFIG_CONTAINER``) into its state folder (``kernel.settings.config_drop_dir``) at most
every ``interval`` seconds, and the ``ConfigStore`` sees the files change like any other. Only
config files (.json, .yaml, .yml) are mirrored; a blob that disappears is removed locally, which
retires its agent at the next sync. Every app reads through ``mirrored_configs``: the realm and
MCP apps with their services' mirror, the kernel's functions through ``current_configs``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from pathlib import Path

from typing import TYPE_CHECKING

from kernel.adapters import redact
from kernel.config.loader import CONFIG_SUFFIXES, ConfigSet
from kernel.ports import BlobStore, NotFound

if TYPE_CHECKING:
    from kernel.config.store import ConfigStore

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


async def mirrored_configs(store: ConfigStore, mirror: Mirror | None, *, refresh: bool = False) -> ConfigSet:
    """``store``'s configs, with ``mirror`` (if any) refreshed first (at once with ``refresh``);
    when that changed a file, or with ``refresh``, the files are looked at now (on the config
    thread). A mirror that fails is logged and the configs on disk are used: a storage outage must
    not fail a wake, a health probe or a workflow trigger that has configs to go on with."""
    if mirror is not None:
        try:
            if await mirror.refresh(force=refresh):
                refresh = True
        except Exception as error:  # noqa: BLE001 - the configs on disk still serve; tried again later
            log.warning("config drop: mirroring container '%s' failed (%s: %s); the configs already on disk "
                        "are used", mirror.container, type(error).__name__, redact(str(error))[:200])
    return await store.fresh(refresh=True) if refresh else store.current()


#: The kernel's mirror per event loop: its functions run on the loop's own adapters
#: (``kernel.runtime``), which a closed platform replaces, so a mirror is rebuilt over new ones.
_kernel_mirrors: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Mirror] = weakref.WeakKeyDictionary()


async def current_configs(*, refresh: bool = False) -> ConfigSet:
    """The process's configs (``default_store()``), with AOS_CONFIG_CONTAINER mirrored first as in
    ``mirrored_configs``: what the kernel app's functions read."""
    from kernel import runtime, settings
    from kernel.config.store import default_store

    mirror = None
    container = settings.get("AOS_CONFIG_CONTAINER")
    if container:
        loop, blobs, directory = asyncio.get_running_loop(), runtime.adapters().blobs, settings.config_drop_dir()
        mirror = _kernel_mirrors.get(loop)
        if mirror is None or (mirror.blobs, mirror.container, mirror.directory) != (blobs, container, directory):
            mirror = _kernel_mirrors[loop] = Mirror(blobs, container, directory)
    return await mirrored_configs(default_store(), mirror, refresh=refresh)
