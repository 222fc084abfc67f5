"""The services the realm's functions use, built once per event loop from app settings.

Functions get their dependencies here rather than from globals scattered through modules: the
storage and messaging ports (``kernel.adapters.Adapters``), the turn archive, the dead-letter
store, approvals, the audit log, the policy guard and the inference router. Async functions of
one app share one event loop (the Python worker's, or the embedded engine's), and the adapters
are asyncio objects, so there is one ``RealmServices`` per loop. ``close_services()`` closes them at shutdown.

MCP tools are not here: turns reach them through the MCPServers app's gateway over Service Bus.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kernel import runtime, settings
from kernel.adapters.factory import Adapters
from kernel.config.drop import Mirror, mirrored_configs
from kernel.config.loader import ConfigSet
from kernel.config.models import AgentConfig
from kernel.config.store import ConfigStore, default_store
from kernel.inference.router import InferenceRouter
from kernel.deadletters import DeadLetterStore
from kernel.governance.audit import AuditLog
from kernel.governance.policy_guard import PolicyGuard
from realm_of_agents.approvals import ApprovalStore
from realm_of_agents.archive import TurnArchive


class RealmServices:
    def __init__(self, environ: Any = None, configs: ConfigStore | None = None) -> None:
        self.environ = settings.environment() if environ is None else environ
        self._owns_adapters = environ is not None  # else they are the loop's shared ones
        self.adapters = Adapters(self.environ) if self._owns_adapters else runtime.adapters()
        self.configs = configs or default_store()
        self.archive = TurnArchive(self.adapters.blobs, self.adapters.tables)
        self.deadletters = DeadLetterStore(self.adapters.blobs, self.adapters.tables)
        self.approvals = ApprovalStore(self.adapters.tables)
        self.audit = AuditLog(self.adapters.tables)
        self.policy = PolicyGuard(self.adapters.tables, self.configs.current, self.audit)
        self._inference: InferenceRouter | None = None
        container = settings.get("AOS_CONFIG_CONTAINER", self.environ)
        self._mirror = Mirror(self.adapters.blobs, container, settings.config_drop_dir(self.environ)) if container else None

    async def current_configs(self, *, refresh: bool = False) -> ConfigSet:
        """The configs now; with AOS_CONFIG_CONTAINER set, dropped configs are mirrored first
        (at most every 30 s unless ``refresh``), and looked at now when that changed a file
        (``kernel.config.drop.mirrored_configs``)."""
        return await mirrored_configs(self.configs, self._mirror, refresh=refresh)

    def agent(self, agent_id: str) -> AgentConfig | None:
        return self.configs.current().agents.get(agent_id)

    async def inference(self) -> InferenceRouter:
        """The router for agents' model calls: the endpoints declared in config (read at each call)
        plus the app settings' default endpoint; one per loop, as its pools are asyncio objects."""
        if self._inference is None:
            from kernel.inference.factory import router

            self._inference = router(self.environ, lambda: self.configs.current().endpoints,
                                     secrets=self.adapters.secrets, tables=self.adapters.tables)
        return self._inference

    async def close(self) -> None:
        if self._inference is not None:
            await self._inference.close()
        if self._owns_adapters:
            await self.adapters.close()
        else:
            await runtime.close()


_by_loop: dict[asyncio.AbstractEventLoop, RealmServices] = {}


def services() -> RealmServices:
    """The services of the running event loop (built on first use)."""
    loop = asyncio.get_running_loop()
    found = _by_loop.get(loop)
    if found is None:
        found = _by_loop[loop] = RealmServices()
    return found


async def close_services() -> None:
    """Close the running loop's services (the embedded platform calls this at shutdown)."""
    found = _by_loop.pop(asyncio.get_running_loop(), None)
    if found is not None:
        await found.close()
