"""The MCPServers app: the tool gateway on Service Bus and the MCP servers' HTTP API.

This module only binds functions to triggers; the work is in the modules it names.
"""

from __future__ import annotations

import azure.durable_functions as df
import azure.functions as func

from kernel.governance.access import requires
from kernel.topology import GATEWAY_SUBSCRIPTION, MCP_REQUESTS
from mcp_servers import api, bus, retention
from mcp_servers.services import services

bp = df.Blueprint()


@bp.service_bus_topic_trigger(arg_name="message", topic_name=MCP_REQUESTS, subscription_name=GATEWAY_SUBSCRIPTION,
                              connection="ServiceBusConnection")
async def mcp_gateway(message: func.ServiceBusMessage) -> None:
    """One tool request (list tools, call a tool, list or read resources), answered on mcp-responses.
    One message per invocation, so a slow tool does not hold up the requests behind it."""
    mcp = services()
    await bus.handle_request(message.get_body(), message.message_id, mcp.gateway, mcp.adapters.sender,
                             mcp.deadletters)


@bp.timer_trigger(arg_name="timer", schedule="0 41 * * * *", run_on_startup=False)
async def tool_call_retention(timer: func.TimerRequest) -> None:
    """Hourly: delete the gateway's tool-call claims (and result blobs) older than
    AOS_HISTORY_RETENTION_DAYS, when no turn that made them can run again."""
    mcp = services()
    await retention.sweep_claims(mcp.adapters.tables, mcp.adapters.blobs)


@bp.route(route="mcp/servers", methods=["GET"])
@requires("reader")
async def list_servers(req: func.HttpRequest) -> func.HttpResponse:
    """Declared MCP servers with health: state, last error, restarts, tool count."""
    return await api.list_servers(req)


@bp.route(route="mcp/servers/{server_id}/tools", methods=["GET"])
@requires("reader")
async def list_server_tools(req: func.HttpRequest) -> func.HttpResponse:
    """A server's tools (after its include/exclude filters) with their input schemas."""
    return await api.list_tools(req)


@bp.route(route="mcp/servers/{server_id}/tools/{tool}/call", methods=["POST"])
@requires("operator")
async def call_server_tool(req: func.HttpRequest) -> func.HttpResponse:
    """Call a tool as an agent: its grants apply and the call is audited."""
    return await api.call_tool(req)
