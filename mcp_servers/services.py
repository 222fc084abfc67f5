"""The MCPServers app's services, one set per event loop: the server manager and the gateway.

The manager starts every enabled server on first use (a Service Bus request or an HTTP call),
once for all callers; the gateway in front of it reads agents' grants and servers' settings
from the current configs, enforces their policies' tool-call rate limits, keeps call results in
blob storage and writes the audit log, all through the kernel's ports. ``close_services()``
stops the servers at shutdown.

MCP server configs are live: when a server is added, removed or changed, the next request gets
a new manager started from the current configs, and the old one is closed once the calls it may
still be running have had their timeout (so a config drop never cuts a call short). With
``AOS_CONFIG_CONTAINER`` set, dropped configs are mirrored first, as in the realm app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import TYPE_CHECKING, Any

from kernel import runtime, settings
from kernel.config.drop import Mirror, mirrored_configs
from kernel.config.loader import ConfigSet
from kernel.config.store import ConfigStore, default_store
from kernel.deadletters import DeadLetterStore
from kernel.governance.audit import AuditLog
from kernel.governance.policy_guard import PolicyGuard

if TYPE_CHECKING:  # the mcp SDK and jsonschema load with the first gateway, not at app start
    from mcp_servers.gateway import ToolGateway

log = logging.getLogger("aos.mcp.services")


class McpServices:
    def __init__(self, configs: ConfigStore | None = None) -> None:
        self.adapters = runtime.adapters()
        self.configs = configs or default_store()
        self.audit = AuditLog(self.adapters.tables)
        self.policy = PolicyGuard(self.adapters.tables, self.configs.current, self.audit)
        self.deadletters = DeadLetterStore(self.adapters.blobs, self.adapters.tables)
        self._gateway: ToolGateway | None = None
        self._servers_version: dict[str, str] | None = None
        self._retiring: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()
        container = settings.get("AOS_CONFIG_CONTAINER")
        self._mirror = Mirror(self.adapters.blobs, container, settings.config_drop_dir()) if container else None

    async def current_configs(self) -> ConfigSet:
        """The configs now (dropped ones mirrored first, at most every 30 s, and looked at now when
        that changed a file)."""
        return await mirrored_configs(self.configs, self._mirror)

    async def gateway(self) -> ToolGateway:
        """The gateway over a manager of the currently declared servers (started on first use)."""
        configs = await self.current_configs()
        declared = {server_id: configs.source("mcp_server", server_id).version for server_id in configs.mcp_servers}
        from mcp_servers.gateway import ToolGateway
        from mcp_servers.manager import McpServerManager, resolver_from_store

        async with self._lock:
            if self._gateway is None or declared != self._servers_version:
                manager = McpServerManager(configs.mcp_servers.values(), app_root=settings.APP_ROOT,
                                           resolver=resolver_from_store(self.adapters.secrets, settings.environment()))
                await manager.start()
                previous = self._gateway
                self._gateway = ToolGateway(manager, self.configs.current, self.adapters.blobs, self.adapters.tables,
                                            self.audit, policy=self.policy)
                self._servers_version = declared
                if previous is not None:
                    log.info("MCP server configs changed: started %d server(s) anew", len(declared))
                    self._retire(previous)
            return self._gateway

    async def server_health(self, timeout: float) -> dict[str, dict[str, Any]] | None:
        """The manager's health per declared server (``McpServerManager.health``), starting the servers
        if this instance has not yet; ``None`` when that start takes longer than ``timeout`` seconds
        (it goes on, so the next readiness probe finds the servers up)."""
        starting = asyncio.ensure_future(self.gateway())
        starting.add_done_callback(lambda task: task.cancelled() or task.exception())  # retrieved, never lost
        try:
            gateway = await asyncio.wait_for(asyncio.shield(starting), timeout)
        except TimeoutError:
            return None
        return gateway.manager.health()

    def _retire(self, gateway: ToolGateway) -> None:
        grace = max((config.timeouts.call_seconds for config in gateway.manager.configs()), default=0.0)

        async def close_later() -> None:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(grace)
            await gateway.close()

        task = asyncio.create_task(close_later(), name="mcp-retire-manager")
        self._retiring.add(task)
        task.add_done_callback(self._retiring.discard)

    async def close(self) -> None:
        for task in list(self._retiring):
            task.cancel()  # close_later then closes its manager at once
        await asyncio.gather(*self._retiring, return_exceptions=True)
        if self._gateway is not None:
            await self._gateway.close()
            self._gateway = None


_by_loop: dict[asyncio.AbstractEventLoop, McpServices] = {}


def services() -> McpServices:
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = McpServices()
    return found


async def close_services() -> None:
    """Stop the running loop's MCP servers (the embedded platform calls this at shutdown)."""
    found = _by_loop.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()
