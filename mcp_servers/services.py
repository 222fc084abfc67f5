"""The MCPServers app's services, one set per event loop: the server manager and the gateway.

The manager starts every enabled server on first use (a Service Bus request or an HTTP call),
once for all callers; the gateway in front of it reads agents' grants and servers' settings
from the current configs, keeps call results in blob storage and writes the audit log, all
through the kernel's ports. ``close_services()`` stops the servers at shutdown.
"""

from __future__ import annotations

import asyncio

from kernel import runtime, settings
from kernel.config.store import ConfigStore, default_store
from kernel.deadletters import DeadLetterStore
from kernel.governance.audit import AuditLog
from mcp_servers.gateway import ToolGateway
from mcp_servers.manager import McpServerManager, resolver_from_store


class McpServices:
    def __init__(self, configs: ConfigStore | None = None) -> None:
        self.adapters = runtime.adapters()
        self.configs = configs or default_store()
        self.audit = AuditLog(self.adapters.tables)
        self.deadletters = DeadLetterStore(self.adapters.blobs, self.adapters.tables)
        self._gateway: ToolGateway | None = None
        self._lock = asyncio.Lock()

    async def gateway(self) -> ToolGateway:
        """The gateway; the first call starts the declared MCP servers."""
        async with self._lock:
            if self._gateway is None:
                environ = settings.environment()
                manager = McpServerManager(self.configs.current().mcp_servers.values(), app_root=settings.APP_ROOT,
                                           resolver=resolver_from_store(self.adapters.secrets, environ))
                await manager.start()
                self._gateway = ToolGateway(manager, self.configs.current, self.adapters.blobs, self.audit)
            return self._gateway

    @property
    def started(self) -> bool:
        return self._gateway is not None

    async def close(self) -> None:
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
