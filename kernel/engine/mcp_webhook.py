"""The MCP extension's webhook: every ``mcpToolTrigger`` function served as one MCP server.

In Azure the Functions MCP extension serves an app's tool functions over streamable HTTP at
``/runtime/webhooks/mcp`` (authenticated with the ``mcp_extension`` system key or the master key
in ``x-functions-key`` or ``code=``). The engine plays that part on its own HTTP port:

* ``tools/list`` lists one tool per function, its input schema built from the binding's
  ``toolProperties`` exactly as the extension builds it (``type``/``description`` per property,
  ``items`` for arrays, ``required`` always present);
* ``tools/call`` checks the required properties, then invokes the function through the engine's
  normal invocation path with the trigger argument the extension sends (a JSON string with
  ``name``, ``arguments``, ``sessionid``, ``clientinfo``, ``transport``), and turns its return value
  into the result the way the worker and the extension do: the worker's ``mcpToolTrigger``
  converter encodes it, then a plain binding makes it one text block, and a ``useResultSchema``
  binding reads the worker's ``{"type", "content", "structuredContent"}`` envelope.

Unlike the extension, a missing required property and a function that raises are answered as
``isError`` results naming the problem (the MCP spec's advice for tool errors), not as JSON-RPC
errors. An unknown tool is a JSON-RPC error (-32602) in both.

The protocol itself is the ``mcp`` SDK's: a low-level ``Server`` behind a stateless
``StreamableHTTPSessionManager``, which is an ASGI app; :func:`serve_asgi` bridges one aiohttp
request into it. Using the SDK's transport rather than a hand-written JSON-RPC loop keeps every
protocol version and client the SDK speaks (the legacy initialize handshake and the 2026 stateless
era) working. Stateless is what the extension runs too: nothing is kept between requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Mapping

import mcp_types as types
from aiohttp import web
from azure.functions import meta
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError
from pydantic import ValidationError

from .http import AuthKeys
from .indexing import AppIndex, FunctionSpec, IndexingError
from .invoke import Invocation

log = logging.getLogger("aos.engine.mcp")

#: Where the extension serves streamable HTTP (its deprecated SSE transport, ``/sse``, is not served).
MCP_WEBHOOK_PATH = "/runtime/webhooks/mcp"
TRIGGER = "mcpToolTrigger"
#: The extension's defaults for ``extensions.mcp.serverName`` / ``serverVersion`` in host.json.
DEFAULT_SERVER_NAME = "Azure Functions MCP server"
DEFAULT_SERVER_VERSION = "1.0.0"
_LOOPBACK = ("127.0.0.1", "localhost", "::1")

Invoker = Callable[[FunctionSpec, dict[str, Any]], Awaitable[Invocation]]


@dataclass(frozen=True)
class McpTool:
    """One tool: the function behind it and the schema clients see."""

    name: str
    description: str
    input_schema: dict[str, Any]
    spec: FunctionSpec

    @property
    def required(self) -> list[str]:
        return list(self.input_schema["required"])

    @property
    def use_result_schema(self) -> bool:
        return bool(self.spec.trigger.get("useResultSchema"))

    def definition(self) -> types.Tool:
        return types.Tool(name=self.name, description=self.description, input_schema=self.input_schema)


def input_schema(tool_properties: Any, *, where: str) -> dict[str, Any]:
    """The JSON schema the extension derives from a binding's ``toolProperties`` (a JSON list)."""
    raw = tool_properties or "[]"
    try:
        properties = json.loads(raw) if isinstance(raw, str) else raw
    except json.JSONDecodeError as error:
        raise IndexingError(f"{where}: toolProperties is not valid JSON: {error}") from None
    if not isinstance(properties, list) or not all(isinstance(p, Mapping) for p in properties):
        raise IndexingError(f"{where}: toolProperties must be a JSON list of objects with propertyName and propertyType")
    schema: dict[str, Any] = {}
    required: list[str] = []
    for prop in properties:
        name = prop.get("propertyName")
        if not isinstance(name, str) or not name.strip():
            continue  # the extension skips nameless properties too
        kind = str(prop.get("propertyType") or "string")
        entry: dict[str, Any] = {"type": "array", "items": {"type": kind}} if prop.get("isArray") else {"type": kind}
        entry["description"] = str(prop.get("description") or "")
        schema[name] = entry
        if (prop.get("isRequired") or prop.get("required")) and name not in required:
            required.append(name)
    return {"type": "object", "properties": schema, "required": required}


def tools_from_index(index: AppIndex) -> dict[str, McpTool]:
    """Every ``mcpToolTrigger`` function as a tool, by tool name; two functions may not share one."""
    tools: dict[str, McpTool] = {}
    for spec in index.by_trigger(TRIGGER):
        where = f"function '{spec.name}'"
        name = spec.trigger.get("toolName")
        if not isinstance(name, str) or not name:
            raise IndexingError(f"{where}: mcpToolTrigger has no toolName")
        if name in tools:
            raise IndexingError(f"{where}: tool name '{name}' is already served by function '{tools[name].spec.name}'")
        tools[name] = McpTool(name, str(spec.trigger.get("description") or ""),
                              input_schema(spec.trigger.get("toolProperties"), where=where), spec)
    return tools


def missing_required(tool: McpTool, arguments: Mapping[str, Any]) -> list[str]:
    """Required properties absent or null (an empty string counts as given, as in the extension)."""
    return [name for name in tool.required if arguments.get(name) is None]


def trigger_value(tool: McpTool, arguments: Mapping[str, Any], *, session_id: str | None,
                  client_info: types.Implementation | None) -> str:
    """The trigger argument the extension passes: its ``ToolInvocationContext`` as JSON."""
    context: dict[str, Any] = {
        "name": tool.name,
        "arguments": dict(arguments),
        "sessionid": session_id,
        "clientinfo": client_info.model_dump(mode="json", by_alias=True, exclude_none=True) if client_info else None,
        "transport": {"name": "http-streamable", "properties": {}},
    }
    return json.dumps(context)


def tool_result(tool: McpTool, value: Any) -> types.CallToolResult:
    """The function's return value as the client sees it (worker encoding, then the host's binder)."""
    datum = meta.get_binding_registry().get(TRIGGER).encode(value, expected_type=None)
    raw = datum.value.decode("utf-8", errors="replace") if isinstance(datum.value, (bytes, bytearray)) else datum.value
    if not tool.use_result_schema:
        return types.CallToolResult(content=[types.TextContent(type="text", text=str(raw))])
    try:
        return _from_envelope(json.loads(raw))
    except (TypeError, ValueError, KeyError, ValidationError) as error:
        return error_result(f"tool '{tool.name}' (useResultSchema) returned a value that is not the worker's result "
                            f"envelope {{\"type\", \"content\", \"structuredContent\"}}: {error}")


def _from_envelope(envelope: Mapping[str, Any]) -> types.CallToolResult:
    kind, content = envelope["type"], json.loads(envelope["content"])
    if kind == "call_tool_result":
        result = types.CallToolResult.model_validate(content)
    elif kind == "multi_content_result":
        result = types.CallToolResult(content=[_block(item) for item in content])
    else:
        result = types.CallToolResult(content=[_block({**content, "type": kind})])
    structured = envelope.get("structuredContent")
    if result.structured_content is None and isinstance(structured, str):
        parsed = json.loads(structured)
        if isinstance(parsed, dict):  # MCP's structuredContent is an object; anything else stays text only
            result.structured_content = parsed
    return result


def _block(item: Any) -> types.ContentBlock:
    return types.CallToolResult.model_validate({"content": [item]}).content[0]


def error_result(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(type="text", text=message)], is_error=True)


class McpWebhook:
    """Serves the app's tool functions at :data:`MCP_WEBHOOK_PATH` while started."""

    def __init__(self, index: AppIndex, keys: AuthKeys, invoker: Invoker, *, host_json: Mapping[str, Any],
                 bind: str) -> None:
        self.tools = tools_from_index(index)
        self.keys = keys
        self.invoker = invoker
        self.inflight = 0
        extensions = host_json.get("extensions") if isinstance(host_json.get("extensions"), Mapping) else {}
        options = extensions.get("mcp") if isinstance(extensions.get("mcp"), Mapping) else {}
        system = options.get("system") if isinstance(options.get("system"), Mapping) else {}
        self.anonymous = str(system.get("webhookAuthorizationLevel") or "").lower() == "anonymous"
        self.server = Server(str(options.get("serverName") or DEFAULT_SERVER_NAME),
                             version=str(options.get("serverVersion") or DEFAULT_SERVER_VERSION),
                             instructions=str(options["instructions"]) if options.get("instructions") else None,
                             on_list_tools=self._list_tools, on_call_tool=self._call_tool)
        # As the SDK does for a loopback server: refuse other Host/Origin headers (DNS rebinding).
        security = TransportSecuritySettings(
            enable_dns_rebinding_protection=True,
            allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
            allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
        ) if bind in _LOOPBACK else None
        self._manager = StreamableHTTPSessionManager(self.server, stateless=True, security_settings=security)
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # lifecycle: the manager's task group lives in a task of its own, so start and stop may be
    # called from different tasks.
    async def start(self) -> None:
        ready = asyncio.Event()

        async def run() -> None:
            async with self._manager.run():
                ready.set()
                await self._stop.wait()

        self._task = asyncio.create_task(run(), name="aos-mcp-webhook")
        waiter = asyncio.create_task(ready.wait())
        await asyncio.wait({self._task, waiter}, return_when=asyncio.FIRST_COMPLETED)
        waiter.cancel()
        if self._task.done():
            self._task.result()  # raises what stopped it

    async def close(self) -> None:
        if self._task is not None:
            self._stop.set()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    # HTTP ------------------------------------------------------------------------------------
    async def handle(self, request: web.Request) -> web.StreamResponse:
        key = request.headers.get("x-functions-key") or request.query.get("code")
        if not self.anonymous and not self.keys.allows("FUNCTION", key):
            return web.json_response({"error": "the MCP endpoint needs the master key or a function key "
                                               "(x-functions-key header or code=)"}, status=401)
        if request.method != "POST":  # stateless, as the extension: no GET stream, no session to DELETE
            return web.Response(status=405, headers={"Allow": "POST"})
        return await serve_asgi(self._manager.handle_request, request)

    # MCP -------------------------------------------------------------------------------------
    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        return types.ListToolsResult(tools=[tool.definition() for tool in self.tools.values()])

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        tool = self.tools.get(params.name)
        if tool is None:
            raise MCPError(types.INVALID_PARAMS, f"Unknown tool: '{params.name}'; this server has "
                                                 f"{', '.join(sorted(self.tools)) or 'no tools'}")
        arguments = dict(params.arguments or {})
        missing = missing_required(tool, arguments)
        if missing:
            return error_result("One or more required tool properties are missing values. "
                                f"Please provide: {', '.join(missing)}")
        request = getattr(ctx, "request", None)
        session = getattr(ctx, "session", None)
        value = trigger_value(tool, arguments,
                              session_id=request.headers.get("mcp-session-id") if request is not None else None,
                              client_info=getattr(getattr(session, "client_params", None), "client_info", None))
        self.inflight += 1
        try:
            invocation = await self.invoker(tool.spec, {str(tool.spec.trigger["name"]): value})
        except Exception as error:  # the function failed: the caller gets what failed, the log the traceback
            log.exception("MCP tool function '%s' failed", tool.spec.name)
            return error_result(f"tool '{tool.name}' failed: {type(error).__name__}: {error}")
        finally:
            self.inflight -= 1
        return tool_result(tool, invocation.result)


async def serve_asgi(app: Callable[..., Awaitable[None]], request: web.Request) -> web.StreamResponse:
    """Run one request through an ASGI app and stream its answer back through aiohttp."""
    body = await request.read()
    finished = asyncio.Event()
    delivered = False
    response: web.StreamResponse | None = None
    gone = False
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": request.method,
        "scheme": request.scheme, "path": request.path, "raw_path": request.raw_path.split("?")[0].encode("latin-1"),
        "query_string": request.query_string.encode("latin-1"), "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in request.headers.items()],
        "client": (request.remote or "", 0), "server": None,
    }

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def send(message: Mapping[str, Any]) -> None:
        nonlocal response, gone
        if gone:
            return
        try:
            if message["type"] == "http.response.start":
                response = web.StreamResponse(status=int(message["status"]))
                for name, value in message.get("headers", []):
                    response.headers.add(name.decode("latin-1"), value.decode("latin-1"))
                await response.prepare(request)
            elif message["type"] == "http.response.body" and response is not None:
                if message.get("body"):
                    await response.write(message["body"])
                if not message.get("more_body"):
                    await response.write_eof()
        except ConnectionError:  # the client went away; let the app wind down
            gone = True
            finished.set()

    try:
        await app(scope, receive, send)
    finally:
        finished.set()
    return response if response is not None else web.Response(status=500)
