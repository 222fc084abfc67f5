"""The MCPServers app's HTTP API: servers with health, a server's tools, a tool call as an agent.

A call through the API goes through the same gateway as an agent's turn: the agent named in
``as`` must be granted the tool, the call is audited (actor ``api``), and a ``call_id`` makes it
once-only like a turn's call (one is generated when none is given).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import azure.functions as func

from kernel.governance.access import acting
from mcp_servers.services import services


def respond(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2, default=str), status_code=status, mimetype="application/json")


def error(message: str, status: int) -> func.HttpResponse:
    return respond({"error": message}, status)


async def list_servers(req: func.HttpRequest) -> func.HttpResponse:
    """Declared servers with their health (starting them on first use); never env or header values."""
    mcp = services()
    configs = mcp.configs.current()
    health = (await mcp.gateway()).manager.health()
    servers = []
    for address, server in sorted(configs.mcp_servers.items()):
        servers.append({
            "id": address, "transport": server.transport, "enabled": server.enabled,
            "description": server.description, "tools": server.tools.model_dump(),
            "config_version": configs.source("mcp_server", address).version,
            "health": health.get(address) or {"state": "not started (declared after this instance started)",
                                                 "available": False},
        })
    return respond({"servers": servers})


async def list_tools(req: func.HttpRequest) -> func.HttpResponse:
    server_id = req.route_params["server_id"]
    mcp = services()
    if server_id not in mcp.configs.current().mcp_servers:
        return error(f"no MCP server '{server_id}' is declared", 404)
    manager = (await mcp.gateway()).manager
    health = manager.health().get(server_id, {})
    tools = manager.list_tools(server_id) if health.get("available") else []
    return respond({"server": server_id, "health": health, "tools": tools})


async def call_tool(req: func.HttpRequest) -> func.HttpResponse:
    """``{"as": AGENT, "arguments": {...}, "call_id": optional}``; the result, or the refusal: 403 when the
    agent is not granted the tool, 429 when a policy's rate limit refuses the call now."""
    server_id, tool = req.route_params["server_id"], req.route_params["tool"]
    try:
        body = req.get_json()
    except ValueError:
        return error("the body is not valid JSON: expected {\"as\": AGENT, \"arguments\": {...}}", 400)
    if not isinstance(body, dict):
        return error("the body must be a JSON object: {\"as\": AGENT, \"arguments\": {...}}", 400)
    agent_id, arguments = body.get("as"), body.get("arguments", {})
    if not isinstance(agent_id, str) or not agent_id:
        return error("'as' must name the agent whose grants apply to this call", 400)
    if not isinstance(arguments, dict):
        return error("'arguments' must be a JSON object", 400)
    call_id = str(body.get("call_id") or f"api:{uuid.uuid4().hex}")
    gateway = await services().gateway()
    result = await gateway.call_tool(agent_id, server_id, tool, arguments, call_id=call_id, actor=acting())
    answer = {"server": server_id, "tool": tool, "as": agent_id, "call_id": call_id, "result": result}
    if result.get("error") == "ToolDenied":
        return respond({"error": result["content"][0]["text"], **answer}, 403)
    if result.get("error") == "PolicyRefused":  # a rate limit: the same call may pass later
        return respond({"error": result["content"][0]["text"], **answer}, 429)
    return respond(answer)
