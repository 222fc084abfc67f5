"""The in-process tool gateway: an agent's granted MCP tools, called through the server manager.

It enforces each agent's tool allow-list itself (a tool result is data, never a way to reach a
tool the agent was not given) and makes every call idempotent by its call id: the first result is
kept in blob storage under ``toolcalls/<agent>/<call id>.json``, and a repeated call id (a turn
activity retried after a crash) returns it instead of calling the tool again.

This is the gateway the RealmOfAgents app uses when the MCP servers run in the same process (the
embedded platform). The Service Bus round trip to the MCPServers app implements the same
``kernel.ports.ToolGateway`` port.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from typing import Any

from kernel.config.models import ToolGrant
from kernel.ports import BlobStore, NotFound, ToolDenied
from mcp_servers.manager import McpManagerError, McpServerManager, UnknownServer

CALLS_CONTAINER = "toolcalls"

GrantLookup = Callable[[str], list[ToolGrant]]


class InProcessToolGateway:
    def __init__(self, manager: McpServerManager, grants: GrantLookup, results: BlobStore) -> None:
        """``grants(agent_id)`` returns the agent's current tool grants (from its config)."""
        self._manager = manager
        self._grants = grants
        self._results = results

    async def list_tools(self, agent_id: str) -> dict[str, Any]:
        tools: list[dict[str, Any]] = []
        unavailable: dict[str, str] = {}
        health = self._manager.health()
        for grant in self._grants(agent_id):
            status = health.get(grant.server)
            if status is None:
                unavailable[grant.server] = f"no MCP server '{grant.server}' is declared"
                continue
            if not status.get("available"):
                unavailable[grant.server] = f"MCP server '{grant.server}' is {status.get('state')}" + (
                    f": {status['last_error']}" if status.get("last_error") else "")
                continue
            for tool in self._manager.list_tools(grant.server):
                if grant.tools is None or tool["name"] in grant.tools:
                    tools.append({"server": grant.server, **tool})
        return {"tools": tools, "unavailable": unavailable}

    async def call_tool(self, agent_id: str, server: str, tool: str, arguments: Mapping[str, Any], *,
                        call_id: str) -> dict[str, Any]:
        self._check_granted(agent_id, server, tool)
        name = f"{agent_id}/{hashlib.sha256(call_id.encode()).hexdigest()[:32]}.json"
        try:
            return json.loads(await self._results.get(CALLS_CONTAINER, name))
        except NotFound:
            pass
        try:
            result = await self._manager.call_tool(server, tool, arguments)
        except UnknownServer as error:
            raise ToolDenied(str(error)) from None
        except McpManagerError as error:
            result = {"content": [{"type": "text", "text": str(error)}], "structured_content": None,
                      "is_error": True, "error": type(error).__name__}
        await self._results.put(CALLS_CONTAINER, name, json.dumps(result).encode(), content_type="application/json")
        return result

    def _check_granted(self, agent_id: str, server: str, tool: str) -> None:
        for grant in self._grants(agent_id):
            if grant.server == server:
                if grant.tools is None or tool in grant.tools:
                    return
                raise ToolDenied(f"agent '{agent_id}' is granted only {', '.join(grant.tools)} of MCP server '{server}', not '{tool}'")
        raise ToolDenied(f"agent '{agent_id}' is not granted MCP server '{server}'")

    async def close(self) -> None:
        await self._manager.close()
