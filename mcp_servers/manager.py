"""The MCP server manager: the declared MCP servers, called by name.

One :class:`McpServerManager` owns one :class:`~mcp_servers.supervisor.ServerSupervisor` per
declared server; the supervisor starts the server, keeps its session and tool list fresh, restarts
it with backoff and opens a circuit breaker when it keeps breaking (its module docstring has the
rule). The manager is what callers use: it validates arguments against the tool's input schema,
bounds each call by ``timeouts.call_seconds``, turns every failure into one of the errors below
(messages never carry a secret or env value), and tells the supervisor how the server behaved.

The manager has no Azure Functions dependency: the MCP app's gateway and the turn orchestration call
:meth:`call_tool`, :meth:`list_tools`, :meth:`health` on it.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.shared.exceptions import MCPError

from kernel.config.models import McpServerConfig
from kernel.config.references import Reference, environment_lookup
from kernel.governance import secret_values
from kernel.namespaces import address_of
from mcp_servers.supervisor import (
    CIRCUIT_OPEN,
    DISABLED,
    FAILED,
    INHERITED_VARIABLES,
    READY,
    STARTING,
    STOPPED,
    Resolver,
    ServerSupervisor,
    SupervisorPolicy,
    resolve_text,
)

__all__ = [
    "CIRCUIT_OPEN", "DISABLED", "FAILED", "INHERITED_VARIABLES", "READY", "STARTING", "STOPPED",
    "InvalidArguments", "McpManagerError", "McpServerManager", "Resolver", "ServerUnavailable",
    "SupervisorPolicy", "ToolCallFailed", "ToolNotFound", "ToolTimeout", "UnknownServer",
    "resolve_text", "resolver_from_lookup", "resolver_from_store",
]

T = TypeVar("T")


# ---------------------------------------------------------------------------------------- errors


class McpManagerError(Exception):
    """Base of the manager's errors; messages never carry secret values."""

    def __init__(self, server_id: str, message: str) -> None:
        super().__init__(message)
        self.server_id = server_id


class UnknownServer(McpManagerError):
    """No server with that id is declared."""


class ServerUnavailable(McpManagerError):
    """The server is disabled, stopped, failed to start in time, or its circuit is open."""


class ToolNotFound(McpManagerError):
    """The server offers no such tool, or the config filters it out."""


class InvalidArguments(McpManagerError):
    """The arguments violate the tool's input schema; the server was not called."""


class ToolTimeout(McpManagerError):
    """The call did not finish within ``timeouts.call_seconds``."""


class ToolCallFailed(McpManagerError):
    """The server broke during the call (process exit, connection loss) or refused it with a
    protocol error."""


# ------------------------------------------------------------------------------------- resolvers


def resolver_from_lookup(lookup: Callable[[Reference], str]) -> Resolver:
    """An async resolver over a synchronous lookup such as ``environment_lookup(mapping)``."""

    async def resolve(reference: Reference) -> str:
        return lookup(reference)

    return resolve


def resolver_from_store(store: Any, environ: Mapping[str, str]) -> Resolver:
    """``${secret:NAME}`` from a ``SecretStore`` port, ``${env:NAME}`` from ``environ``."""
    env_lookup = environment_lookup(environ)

    async def resolve(reference: Reference) -> str:
        if reference.source == "secret":
            return await store.get(reference.name)
        return env_lookup(reference)

    return resolve


# -------------------------------------------------------------------------------------- manager


class McpServerManager:
    """Starts, supervises and calls the declared MCP servers; an async context manager."""

    def __init__(
        self,
        configs: Iterable[McpServerConfig],
        *,
        app_root: str | Path = ".",
        resolver: Resolver | None = None,
        environ: Mapping[str, str] | None = None,
        policy: SupervisorPolicy | None = None,
    ) -> None:
        """``environ`` is the host environment stdio servers may inherit from (only PATH, see
        ``INHERITED_VARIABLES``; by default the process's executable search path); ``resolver``
        resolves secret and env references (by default from ``environ``, so from nothing)."""
        self.app_root = Path(app_root).resolve()
        self.environ: Mapping[str, str] = (
            environ if environ is not None else {"PATH": os.pathsep.join(os.get_exec_path())}
        )
        self.resolver = resolver or resolver_from_lookup(environment_lookup(environ or {}))
        self.policy = policy or SupervisorPolicy()
        self._servers: dict[str, ServerSupervisor] = {}
        for config in configs:
            key = address_of(config)  # '<namespace>.<id>' outside the default namespace
            if key in self._servers:
                raise ValueError(f"MCP server id '{key}' is declared twice")
            self._servers[key] = ServerSupervisor(
                config, app_root=self.app_root, environ=self.environ, resolver=self.resolver, policy=self.policy
            )

    async def __aenter__(self) -> McpServerManager:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Start every enabled server; returns when each is ready or its first start has failed."""
        enabled = [server for server in self._servers.values() if server.config.enabled]
        for server in enabled:
            server.start()
        await asyncio.gather(*(server.wait_settled() for server in enabled))

    async def close(self) -> None:
        """Stop every server (the stdio processes are ended and reaped)."""
        await asyncio.gather(*(server.stop() for server in self._servers.values()))

    # -- queries ----------------------------------------------------------------------------

    @property
    def server_ids(self) -> list[str]:
        return sorted(self._servers)

    def configs(self) -> list[McpServerConfig]:
        """The server configs this manager was started with."""
        return [self._servers[server_id].config for server_id in self.server_ids]

    def health(self) -> dict[str, dict[str, Any]]:
        """Per server: state, availability, last error (secret-free), restarts, failure streak,
        tool count, ``circuit_open_until`` and ``tools_refreshed_at`` (ISO UTC or null)."""
        return {server_id: self._servers[server_id].health() for server_id in self.server_ids}

    def list_tools(self, server_id: str) -> list[dict[str, Any]]:
        """The server's tools after filtering: name, description, input_schema."""
        server = self._server(server_id)
        return [tool.public() for tool in sorted(server.tools.values(), key=lambda t: t.name)]

    async def refresh_tools(self, server_id: str | None = None) -> None:
        """List the tools of one server, or of every ready server, again now (supervisors also do
        it periodically and when a server says its tools changed)."""
        targets = [self._server(server_id)] if server_id else list(self._servers.values())
        for server in targets:
            await server.refresh_tools()

    # -- calls ------------------------------------------------------------------------------

    async def call_tool(self, server_id: str, tool: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate, call and return ``{"content": [...], "structured_content": ..., "is_error": bool}``."""
        server = self._server(server_id)
        session = await self._session(server)
        spec = server.tools.get(tool)
        if spec is None:
            raise ToolNotFound(server_id, f"MCP server '{server_id}' has no tool '{tool}' (or it is filtered out)")
        args = dict(arguments or {})
        errors = sorted(spec.validator.iter_errors(args), key=lambda e: list(e.absolute_path))
        if errors:
            first = errors[0]
            where = "/".join(str(part) for part in first.absolute_path) or "(root)"
            raise InvalidArguments(
                server_id,
                f"arguments for '{server_id}.{tool}' violate its input schema at {where}: {first.message}",
            )
        result = await self._request(server, session, f"'{server_id}.{tool}'", lambda s: s.call_tool(tool, args))
        return _masked({
            "content": [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.content],
            "structured_content": result.structured_content,
            "is_error": bool(result.is_error),
        })

    async def list_resources(self, server_id: str) -> list[dict[str, Any]]:
        server = self._server(server_id)
        session = await self._session(server)
        result = await self._request(server, session, f"'{server_id}' resources/list", lambda s: s.list_resources())
        return [resource.model_dump(mode="json", by_alias=True, exclude_none=True) for resource in result.resources]

    async def read_resource(self, server_id: str, uri: str) -> list[dict[str, Any]]:
        server = self._server(server_id)
        session = await self._session(server)
        result = await self._request(server, session, f"'{server_id}' resources/read", lambda s: s.read_resource(uri))
        return _masked([item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.contents])

    # -- internals --------------------------------------------------------------------------

    def _server(self, server_id: str) -> ServerSupervisor:
        try:
            return self._servers[server_id]
        except KeyError:
            raise UnknownServer(server_id, f"no MCP server '{server_id}' is declared") from None

    async def _session(self, server: ServerSupervisor) -> ClientSession:
        """The server's open session, waiting for a start in progress (bounded by the startup
        timeout); fails at once when it is disabled, stopped or its circuit is open."""
        session = await server.wait_for_session(server.config.timeouts.startup_seconds)
        if session is not None:
            return session
        server_id = server.config.id
        if server.state in (DISABLED, STOPPED):
            raise ServerUnavailable(server_id, f"MCP server '{server_id}' is {server.state}")
        if server.state == CIRCUIT_OPEN:
            until = server.health()["circuit_open_until"]
            raise ServerUnavailable(
                server_id,
                f"MCP server '{server_id}' is unavailable (circuit open after {server.consecutive_failures} "
                f"consecutive failures{f', until {until}' if until else ''}): {server.last_error}",
            )
        raise ServerUnavailable(
            server_id, f"MCP server '{server_id}' is unavailable ({server.state}): {server.last_error}"
        )

    async def _request(
        self, server: ServerSupervisor, session: ClientSession, what: str,
        send: Callable[[ClientSession], Awaitable[T]],
    ) -> T:
        """Send one request within the call timeout; a break recycles the session and counts toward
        the server's breaker, an answer ends its failure streak."""
        server_id = server.config.id
        limit = server.config.timeouts.call_seconds
        with server.call_in_flight():
            try:
                with anyio.fail_after(limit):
                    result = await send(session)
            except TimeoutError:
                await self._recycle_unless_alive(server, session, f"{what} timed out and the session stopped answering")
                raise ToolTimeout(server_id, f"{what} timed out after {limit:g} s") from None
            except MCPError as error:
                reason = server.redact(f"{what} failed: {error.message} (MCP error {error.code})")
                if error.code == types.CONNECTION_CLOSED:
                    server.call_broke(session, reason)
                else:  # refused, or the transport's word for a lost session: a ping tells which
                    await self._recycle_unless_alive(server, session, reason)
                raise ToolCallFailed(server_id, reason) from None
            except Exception as error:  # the session broke: recycle it, fail this call cleanly
                reason = f"{what} failed: {server.describe(error)}"
                server.call_broke(session, reason)
                raise ToolCallFailed(server_id, reason) from None
        server.call_answered()
        return result

    async def _recycle_unless_alive(self, server: ServerSupervisor, session: ClientSession, reason: str) -> None:
        """Keep the session if it still answers a ping, else recycle it (a break under a call)."""
        try:
            with anyio.fail_after(min(2.0, server.config.timeouts.call_seconds)):
                await session.send_ping()
        except Exception:  # noqa: BLE001
            server.call_broke(session, reason)


def _masked(value: Any) -> Any:
    """``value`` with every resolved ``${secret:…}`` value masked in its strings: a server that echoes
    its environment (or a key it was given) must not hand it to the model or the archive. Values of
    ``${env:…}`` references (paths, hosts) stay: a filesystem server's root is no secret."""
    if isinstance(value, str):
        return secret_values.mask_known(value)
    if isinstance(value, list):
        return [_masked(item) for item in value]
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    return value
