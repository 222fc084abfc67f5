"""The whole platform in one process: ``aos run``.

The embedded engine runs the unmodified ``function_app.py`` with all three roles; the platform
around it does what the Functions host and Azure would: it sets the app settings (embedded
storage and messaging under one state folder), declares the Service Bus topology generated from
the configs, makes the engine's bus the process's message sender, registers the agents, and
watches the config folders (standing in for the blob trigger), redeclaring the topology and
syncing the agents and the workflows' schedules when a file changes.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kernel import settings, telemetry
from kernel.adapters import embedded_sender
from kernel.config.store import default_store, on_config_thread
from kernel.instances import FINISHED
from kernel.topology import build_topology

log = logging.getLogger("aos.platform")
APP = settings.APP_ROOT / "function_app.py"
#: How long a start waits for its agents' registration commands before it reports itself up.
STARTUP_REGISTRATION_SECONDS = 60


def _settle_heap() -> None:
    """Move what start-up built (modules, the app's index, configs, clients) out of the cyclic
    garbage collector's view: a full collection otherwise walks all of it again every few thousand
    turns, a pause of 100+ ms that lands on whichever events are in flight (docs/performance.md)."""
    gc.collect()
    gc.freeze()


class Platform:
    """Async context manager; see ``aos run``."""

    def __init__(self, *, state_dir: str | Path = ".aos", port: int = 7071, bind: str = "127.0.0.1",
                 config_paths: str | None = None, extra_settings: Mapping[str, str] | None = None,
                 watch_interval: float = 1.0, clock: Any = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.port = port
        self.bind = bind
        self.watch_interval = watch_interval
        self._clock = clock
        self._environment = {
            "AOS_STATE_DIR": str(self.state_dir), "AOS_STORAGE": "embedded", "AOS_MESSAGING": "embedded",
            "AOS_APP_ROLES": "", **({"AOS_CONFIG_PATHS": config_paths} if config_paths else {}),
            **dict(extra_settings or {}),
        }
        self._restore: Any = None
        self._telemetry: Any = None
        self.telemetry = "off"  # where traces and metrics go (for the banner)
        self._watcher: asyncio.Task[None] | None = None
        self.host: Any = None

    async def __aenter__(self) -> Platform:
        from kernel.engine.host import EmbeddedHost

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._restore = settings.override(self._environment)
        try:
            self._telemetry = telemetry.configure_local(self.state_dir)  # None under a test's capture
        except ValueError:  # a telemetry setting that cannot work (the message names it)
            self._restore_environment()
            raise
        self.telemetry = telemetry.current().describe() if telemetry.current() else "off"
        default_store.cache_clear()
        self._store = default_store()
        self._seen = self._store.current()  # the configs the topology and the agents were set up from
        topology, _ = build_topology(self._seen)
        self.host = EmbeddedHost(APP, state_path=self.state_dir / "engine.sqlite", settings=dict(settings.environment()),
                                 topology=topology, port=self.port, bind=self.bind, clock=self._clock)
        from realm_of_agents import registration

        # Our sync goes first: the startup timer's (run_on_startup) waits for it, so the report
        # (the banner's counts) is this start's, and a start never returns before it registered.
        gate = registration.sync_lock()
        await gate.acquire()
        try:
            try:
                await self.host.__aenter__()
            except BaseException:
                self._restore_environment()
                raise
            embedded_sender.set_default_target(self.host, asyncio.get_running_loop())
            try:
                self.last_sync = await self.sync(locked=True)
                await self._registered(self.last_sync["commands"])
            except BaseException:
                await self.close()
                raise
        finally:
            gate.release()
        self._watcher = asyncio.create_task(self._watch())
        _settle_heap()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()
            await asyncio.gather(self._watcher, return_exceptions=True)
            self._watcher = None
        from mcp_servers.services import close_services as close_mcp_services
        from realm_of_agents.services import close_services

        if self.host is not None:
            await self.host.stop()  # first: no activity may run on, or record a failure from, a closed service
        await close_mcp_services()  # before the realm's: it shares the loop's adapters, which the realm's close closes
        await close_services()
        if self.host is not None:
            await self.host.close()
            self.host = None
        embedded_sender.set_default_target(None)
        telemetry.release(self._telemetry)  # flushes the spans of the run
        self._telemetry = None
        self._restore_environment()
        default_store.cache_clear()
        gc.unfreeze()  # what this run kept for good becomes collectable again

    def _restore_environment(self) -> None:
        if self._restore is not None:
            self._restore()
            self._restore = None

    @property
    def base_url(self) -> str:
        return self.host.base_url

    @property
    def configs(self) -> Any:
        """The configs the platform runs (``kernel.config.loader.ConfigSet``)."""
        return self._store.current()

    @property
    def key(self) -> str:
        return self.host.master_key

    async def api(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Call the platform's HTTP API (in process, with the master key)."""
        result = await self.host.http(method, f"/api/{path.lstrip('/')}", json=body,
                                      headers={"x-functions-key": self.key})
        text = result.body.decode("utf-8") if result.body else ""
        try:
            return result.status, json.loads(text) if text else None
        except json.JSONDecodeError:
            return result.status, text

    async def sync(self, *, locked: bool = False, refresh: bool = True) -> dict[str, Any]:
        """Register agents from the current configs, as ``POST /api/agents/sync`` does (called in
        process, so it needs no credential whatever AOS_AUTH says). ``locked``: the caller holds
        ``registration.sync_lock()``; ``refresh``: look at the files now (the watcher just did)."""
        from realm_of_agents import registration
        from realm_of_agents.services import services

        realm = services()
        report = await registration.sync(self.host.client, await realm.current_configs(refresh=refresh),
                                         realm.adapters.tables, locked=locked)
        return report.to_dict()

    async def _registered(self, commands: list[str]) -> None:
        """Wait (up to ``STARTUP_REGISTRATION_SECONDS``) for the start's configure and retire
        commands to be applied, so agents are registered when the platform is up; past that, say
        so and go on (they finish in the background)."""
        end = asyncio.get_running_loop().time() + STARTUP_REGISTRATION_SECONDS
        pending = list(commands)
        while pending:
            pending = [i for i in pending if (self.host.engine.status(i, show_input=False) or {}).get("runtimeStatus")
                       not in FINISHED]
            if not pending:
                return
            if asyncio.get_running_loop().time() > end:
                log.warning("%d agent registration command(s) still running after %d s; the platform is up and "
                            "they finish in the background", len(pending), STARTUP_REGISTRATION_SECONDS)
                return
            await asyncio.sleep(0.01)

    async def sync_workflows(self) -> list[str]:
        """Start the schedules of scheduled workflows that have none running, as ``POST
        /api/workflows/sync`` does; returns the schedule instances it started."""
        from kernel.workflows import schedules

        return await schedules.sync(self.host.client, self._store.current())

    async def wait_idle(self, timeout: float = 60.0) -> None:
        await self.host.wait_idle(timeout)

    async def _watch(self) -> None:
        """Poll the config folders and apply what changed (``apply_config_changes``). The store
        decides when the files are looked at again (every two seconds, less often for a folder so
        large that looking takes long), so polling it costs nothing in between, and the look is
        shared with every other reader of the configs."""
        while True:
            await asyncio.sleep(self.watch_interval)
            try:
                await self.apply_config_changes()
            except asyncio.CancelledError:
                raise
            except Exception:  # a sync failure is logged and retried at the next change or tick
                log.exception("config watcher: sync failed")

    async def apply_config_changes(self, *, refresh: bool = False) -> dict[str, Any] | None:
        """When the configs changed since last applied (looked at now with ``refresh``): redeclare
        the bus topology, sync the agents and the workflow schedules (so a dropped scheduled
        workflow starts now, not at the five-minute timer); returns the sync's report, or None
        when nothing changed. The look and the topology's build run on worker threads (at 10,000
        agents they take a few hundred milliseconds of CPU), so turns go on meanwhile."""
        configs = await self._store.fresh(refresh=refresh)
        if configs is self._seen:
            return None
        self._seen = configs
        self._declare(*await on_config_thread(build_topology, configs))
        report = await self.sync(refresh=False)
        schedules = await self.sync_workflows()
        log.info("configs changed: %s; workflow schedules started: %s", report, schedules or "none")
        return report

    def redeclare_topology(self, configs: Any = None) -> None:
        """Declare the bus topology ``configs`` imply (by default the configs on disk now)."""
        self._declare(*build_topology(configs if configs is not None else self._store.current(refresh=True)))

    def _declare(self, topology: dict[str, Any], problems: list[Any]) -> None:
        """Declare ``topology`` on the embedded bus (``problems``: what building it found)."""
        from kernel.engine.topology import declare

        for problem in problems:
            log.warning("topology: %s", problem.message)
        with self.host.store.transaction():
            declare(self.host.bus, self.host.index, topology)
        self.host.service_bus.dirty = True
        self.host.engine.notify()
