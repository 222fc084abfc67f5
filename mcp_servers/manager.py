"""The MCP server manager: starts, supervises and calls the MCP servers declared in config.

One :class:`McpServerManager` owns one long-lived session per enabled server. Each server has a
supervisor task that starts it (stdio process or streamable HTTP connection), initializes the
session, discovers its tools (filtered by the config's ``tools.include/exclude``), and then keeps
it: a process that exits or a session that breaks mid-call is restarted with exponential backoff,
and a circuit breaker stops restarting a server that keeps failing until a cool-down passes.

Secrets (``${secret:NAME}``, ``${env:NAME}`` in a stdio server's env or an HTTP server's headers
and URL) are resolved through an injected async resolver at each start, never before, and every
error message the manager stores or raises is scrubbed of the resolved values.

The manager has no Azure Functions dependency: the MCP app's Service Bus gateway and the turn
orchestration call :meth:`call_tool`, :meth:`list_tools`, :meth:`health` on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from kernel.config.models import McpServerConfig
from kernel.config.references import Reference, environment_lookup, find_references
from mcp_servers.stdio_transport import isolated_stdio_client

logger = logging.getLogger(__name__)

#: An async resolver of one ``${source:name}`` reference; raises ``UnresolvedReference``.
Resolver = Callable[[Reference], Awaitable[str]]

#: Variables a stdio server gets from the platform's own environment besides its declared env:
#: only PATH, so ``node`` (and what it spawns) can be found. A declared value wins.
INHERITED_VARIABLES = ("PATH",)

# Health states.
STARTING = "starting"
READY = "ready"
FAILED = "failed"
CIRCUIT_OPEN = "circuit-open"
DISABLED = "disabled"
STOPPED = "stopped"


# ---------------------------------------------------------------------------------------- errors


class McpManagerError(Exception):
    """Base of the manager's errors; messages never carry secret values."""

    def __init__(self, server_id: str, message: str) -> None:
        super().__init__(message)
        self.server_id = server_id


class UnknownServer(McpManagerError):
    """No server with that id is declared."""


class ServerUnavailable(McpManagerError):
    """The server is disabled, failed to start, or its circuit is open."""


class ToolNotFound(McpManagerError):
    """The server offers no such tool, or the config filters it out."""


class InvalidArguments(McpManagerError):
    """The arguments violate the tool's input schema; the server was not called."""


class ToolTimeout(McpManagerError):
    """The call did not finish within ``timeouts.call_seconds``."""


class ToolCallFailed(McpManagerError):
    """The server broke during the call (process exit, connection loss, protocol error)."""


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


async def resolve_text(text: str, resolver: Resolver, secrets: set[str]) -> str:
    """``text`` with every reference resolved; adds each resolved value to ``secrets``."""
    result = text
    for reference in find_references(text):
        value = await resolver(reference)
        if value:
            secrets.add(value)
        result = result.replace(str(reference), value)
    return result


# ----------------------------------------------------------------------------------- supervisor


@dataclass
class SupervisorPolicy:
    """Restart and circuit-breaker tuning (defaults suit production; tests shorten them)."""

    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    failure_threshold: int = 5
    cooldown_seconds: float = 60.0
    liveness_interval: float = 0.5


@dataclass
class _Tool:
    name: str
    description: str | None
    input_schema: dict[str, Any]
    validator: Any = field(repr=False, default=None)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


class _Server:
    """One declared server and its supervisor task."""

    def __init__(self, config: McpServerConfig, manager: McpServerManager) -> None:
        self.config = config
        self.manager = manager
        self.state = DISABLED if not config.enabled else STARTING
        self.last_error: str | None = None
        self.restarts = 0
        self.consecutive_failures = 0
        self.tools: dict[str, _Tool] = {}
        self.session: ClientSession | None = None
        self.circuit_open_until: float | None = None
        self._secrets: set[str] = set()
        self._recycle = asyncio.Event()
        self._stopping = False
        self._settled = asyncio.Event()  # set when the current start attempt has finished
        self._ready = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._started_once = False

    # -- helpers ----------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "[redacted]")
        return text

    def describe(self, error: BaseException) -> str:
        leaf = _leaf(error)
        message = str(leaf) or type(leaf).__name__
        if isinstance(leaf, FileNotFoundError) and self.config.transport == "stdio":
            message = f"command not found: {self.config.command!r} ({leaf.strerror})"
        elif isinstance(leaf, TimeoutError):
            message = f"timed out after {self.config.timeouts.startup_seconds:g} s while starting"
        return self.redact(f"{type(leaf).__name__}: {message}" if not isinstance(leaf, OSError) else message)

    def request_recycle(self, reason: str) -> None:
        if self.session is not None:
            self.last_error = self.redact(reason)
            self.session = None
            self._ready.clear()
            self._recycle.set()

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        if self.config.enabled and self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-server:{self.config.id}")

    async def wait_settled(self) -> None:
        await self._settled.wait()

    async def stop(self) -> None:
        self._stopping = True
        self._recycle.set()
        task = self._task
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), timeout=10)
            except (asyncio.TimeoutError, Exception):  # pragma: no cover - last resort
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self.session = None
        if self.state != DISABLED:
            self.state = STOPPED

    async def _supervise(self) -> None:
        policy = self.manager.policy
        delay = policy.backoff_initial
        while not self._stopping:
            if self._started_once:
                self.restarts += 1
            self._started_once = True
            self.state = STARTING
            try:
                await self._run_once()
            except Exception as error:  # noqa: BLE001 - every failure is reported, none escapes
                self.last_error = self.describe(error)
                logger.warning("MCP server %s failed: %s", self.config.id, self.last_error)
            self.session = None
            self._ready.clear()
            self._settled.set()
            if self._stopping:
                break
            if self.state == READY:  # it was running and then broke: a fresh failure streak
                delay = policy.backoff_initial
            self.consecutive_failures += 1
            self.state = FAILED
            if self.consecutive_failures >= policy.failure_threshold:
                self.state = CIRCUIT_OPEN
                self.circuit_open_until = time.monotonic() + policy.cooldown_seconds
                logger.warning(
                    "MCP server %s: circuit open after %d consecutive failures (last: %s)",
                    self.config.id, self.consecutive_failures, self.last_error,
                )
                await self._sleep(policy.cooldown_seconds)
                self.circuit_open_until = None
                # half-open: one attempt; one more failure reopens the circuit at once
                self.consecutive_failures = policy.failure_threshold - 1
            else:
                await self._sleep(delay)
                delay = min(delay * 2, policy.backoff_max)

    async def _sleep(self, seconds: float) -> None:
        self._recycle.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._recycle.wait(), timeout=seconds)

    async def _run_once(self) -> None:
        """Start the server, serve until it breaks or is recycled or stopped, then clean up."""
        self._recycle.clear()
        config = self.config
        startup = config.timeouts.startup_seconds
        if config.transport == "stdio":
            env = await self._environment()
            cwd = self.manager.app_root / config.cwd if config.cwd else self.manager.app_root
            with tempfile.TemporaryFile(mode="w+b") as stderr:
                async with isolated_stdio_client(config.command or "", list(config.args), env, cwd, stderr) as (
                    read,
                    write,
                    process,
                ):
                    try:
                        await self._serve(read, write, startup, lambda: process.returncode is not None)
                    except Exception as error:
                        with anyio.move_on_after(0.5):
                            while process.returncode is None:
                                await anyio.sleep(0.02)
                        if process.returncode is None:
                            raise
                        tail = _tail(stderr)
                        detail = f"; stderr: {self.redact(tail)}" if tail else ""
                        raise RuntimeError(
                            f"{self.describe(error)}; process exited with code {process.returncode}{detail}"
                        ) from None
                    if process.returncode is not None and not self._stopping:
                        raise RuntimeError(f"process exited with code {process.returncode}")
        else:
            url = await resolve_text(config.url or "", self.manager.resolver, self._secrets)
            headers = {
                name: await resolve_text(value, self.manager.resolver, self._secrets)
                for name, value in config.headers.items()
            }
            async with create_mcp_http_client(headers=headers) as client:
                async with streamable_http_client(url, http_client=client) as (read, write):
                    await self._serve(read, write, startup, lambda: False)

    async def _environment(self) -> dict[str, str]:
        env = {name: self.manager.environ[name] for name in INHERITED_VARIABLES if name in self.manager.environ}
        for name, value in self.config.env.items():
            env[name] = await resolve_text(value, self.manager.resolver, self._secrets)
        return env

    async def _serve(self, read: Any, write: Any, startup: float, exited: Callable[[], bool]) -> None:
        async with ClientSession(read, write) as session:
            with anyio.fail_after(startup):
                await session.initialize()
                tools = await _list_all_tools(session)
            self.tools = self._filter(tools)
            self.session = session
            self.state = READY
            self.last_error = None
            self.consecutive_failures = 0
            self._ready.set()
            self._settled.set()
            logger.info("MCP server %s ready with %d tools", self.config.id, len(self.tools))
            interval = self.manager.policy.liveness_interval
            while not self._stopping and not self._recycle.is_set() and not exited():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._recycle.wait(), timeout=interval)
            self.session = None
            self._ready.clear()
            if exited() and not self._stopping:
                self.last_error = "the server process exited"

    def _filter(self, tools: Iterable[types.Tool]) -> dict[str, _Tool]:
        include = self.config.tools.include
        exclude = set(self.config.tools.exclude)
        kept: dict[str, _Tool] = {}
        for tool in tools:
            if (include is not None and tool.name not in include) or tool.name in exclude:
                continue
            schema = dict(tool.input_schema or {"type": "object"})
            validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            kept[tool.name] = _Tool(tool.name, tool.description, schema, validator_class(schema))
        return kept

    async def refresh_tools(self) -> None:
        session = self.session
        if session is None:
            return
        with anyio.fail_after(self.config.timeouts.startup_seconds):
            self.tools = self._filter(await _list_all_tools(session))

    async def session_for_call(self) -> ClientSession:
        """The open session, waiting for a start in progress (bounded by the startup timeout)."""
        if self.state == DISABLED:
            raise ServerUnavailable(self.config.id, f"MCP server '{self.config.id}' is disabled")
        if self.state == STOPPED:
            raise ServerUnavailable(self.config.id, f"MCP server '{self.config.id}' is stopped")
        if self.state == CIRCUIT_OPEN:
            raise ServerUnavailable(
                self.config.id,
                f"MCP server '{self.config.id}' is unavailable (circuit open after "
                f"{self.consecutive_failures} consecutive failures): {self.last_error}",
            )
        if self.session is None:
            try:
                await asyncio.wait_for(self._ready.wait(), timeout=self.config.timeouts.startup_seconds)
            except asyncio.TimeoutError:
                pass
        session = self.session
        if session is None:
            raise ServerUnavailable(
                self.config.id, f"MCP server '{self.config.id}' is unavailable ({self.state}): {self.last_error}"
            )
        return session

    def health(self) -> dict[str, Any]:
        return {
            "id": self.config.id,
            "transport": self.config.transport,
            "state": self.state,
            "available": self.state == READY,
            "last_error": self.last_error,
            "restarts": self.restarts,
            "consecutive_failures": self.consecutive_failures,
            "tool_count": len(self.tools) if self.state == READY else 0,
        }


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
        self._servers: dict[str, _Server] = {}
        for config in configs:
            if config.id in self._servers:
                raise ValueError(f"MCP server id '{config.id}' is declared twice")
            self._servers[config.id] = _Server(config, self)

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

    def health(self) -> dict[str, dict[str, Any]]:
        """Per server: state, availability, last error (secret-free), restarts, tool count."""
        return {server_id: self._servers[server_id].health() for server_id in self.server_ids}

    def list_tools(self, server_id: str) -> list[dict[str, Any]]:
        """The server's tools after filtering: name, description, input_schema."""
        server = self._server(server_id)
        return [tool.public() for tool in sorted(server.tools.values(), key=lambda t: t.name)]

    async def refresh_tools(self, server_id: str | None = None) -> None:
        """Re-discover the tools of one server, or of every ready server."""
        targets = [self._server(server_id)] if server_id else list(self._servers.values())
        for server in targets:
            await server.refresh_tools()

    # -- calls ------------------------------------------------------------------------------

    async def call_tool(self, server_id: str, tool: str, arguments: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Validate, call and return ``{"content": [...], "structured_content": ..., "is_error": bool}``."""
        server = self._server(server_id)
        session = await server.session_for_call()
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
        limit = server.config.timeouts.call_seconds
        try:
            with anyio.fail_after(limit):
                result = await session.call_tool(tool, args)
        except TimeoutError:
            await self._after_timeout(server, session)
            raise ToolTimeout(server_id, f"'{server_id}.{tool}' timed out after {limit:g} s") from None
        except Exception as error:  # the session broke: recycle it, fail this call cleanly
            reason = server.redact(f"'{server_id}.{tool}' failed: {_leaf(error)}")
            if server.session is session:
                server.request_recycle(reason)
            raise ToolCallFailed(server_id, reason) from None
        return _plain_result(result)

    async def list_resources(self, server_id: str) -> list[dict[str, Any]]:
        server = self._server(server_id)
        session = await server.session_for_call()
        with anyio.fail_after(server.config.timeouts.call_seconds):
            result = await session.list_resources()
        return [resource.model_dump(mode="json", by_alias=True, exclude_none=True) for resource in result.resources]

    async def read_resource(self, server_id: str, uri: str) -> list[dict[str, Any]]:
        server = self._server(server_id)
        session = await server.session_for_call()
        with anyio.fail_after(server.config.timeouts.call_seconds):
            result = await session.read_resource(uri)
        return [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.contents]

    # -- internals --------------------------------------------------------------------------

    def _server(self, server_id: str) -> _Server:
        try:
            return self._servers[server_id]
        except KeyError:
            raise UnknownServer(server_id, f"no MCP server '{server_id}' is declared") from None

    async def _after_timeout(self, server: _Server, session: ClientSession) -> None:
        """A call timed out: keep the session if it still answers a ping, else recycle it."""
        try:
            with anyio.fail_after(min(2.0, server.config.timeouts.call_seconds)):
                await session.send_ping()
        except Exception:  # noqa: BLE001
            if server.session is session:
                server.request_recycle("the session stopped answering after a call timed out")


async def _list_all_tools(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    while True:
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            return tools


def _plain_result(result: Any) -> dict[str, Any]:
    return {
        "content": [item.model_dump(mode="json", by_alias=True, exclude_none=True) for item in result.content],
        "structured_content": result.structured_content,
        "is_error": bool(result.is_error),
    }


def _leaf(error: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)] or list(error.exceptions)
        error = inner[0]
    return error


def _tail(stream: Any, limit: int = 400) -> str:
    with contextlib.suppress(Exception):
        stream.flush()
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(max(0, size - limit))
        return stream.read().decode("utf-8", "replace").strip()
    return ""
