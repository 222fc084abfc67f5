"""The MCPServers app: the MCP servers declared in config."""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func

from kernel.config.store import default_store

bp = df.Blueprint()


@bp.route(route="mcp/servers", methods=["GET"])
def list_servers(req: func.HttpRequest) -> func.HttpResponse:
    """Declared MCP servers: transport, state and tool filters (never env or header values)."""
    configs = default_store().current()
    servers = [
        {
            "id": server.id,
            "transport": server.transport,
            "enabled": server.enabled,
            "description": server.description,
            "tools": server.tools.model_dump(),
            "config_version": configs.source("mcp_server", server.id).version,
        }
        for server in sorted(configs.mcp_servers.values(), key=lambda s: s.id)
    ]
    return func.HttpResponse(json.dumps({"servers": servers}, indent=2), mimetype="application/json")
