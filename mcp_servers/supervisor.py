"""One MCP server's supervisor: starts it, holds its session and tool list, and restarts it.

A :class:`ServerSupervisor` runs one task per enabled server. The task starts the server (a stdio
process or a streamable HTTP connection), initializes the session, lists its tools (filtered by the
config's ``tools.include/exclude``), and then holds the session: it lists the tools again every
``SupervisorPolicy.refresh_interval`` seconds and whenever the server sends
``notifications/tools/list_changed``, and it starts the server again, with exponential backoff,
when the process exits or the session breaks.

References (``${secret:NAME}``, ``${env:NAME}``) in a stdio server's command, args, cwd and env and
in an HTTP server's URL and headers are resolved through an injected async resolver at each start,
never before. Each resolved value joins the server's secret set, and every message the supervisor
stores, logs or hands to the manager is scrubbed of them. A reference that cannot be resolved fails
that start with a reason naming the field and the reference, never a value.

Circuit breaker. Becoming ready does not prove a server healthy; answering a call does. So:

* these count toward ``failure_threshold``: a start that fails (spawn, initialize or the first tool
  listing); a session that breaks while a call is in flight (the process exits or the connection
  drops mid-call, or a timed-out or refused call leaves a session that no longer answers a ping);
  and a session that breaks while idle within ``stable_seconds`` of becoming ready;
* an idle break after ``stable_seconds`` of uptime does not count (the streak is kept as it is) and
  the server is started again after ``backoff_initial``;
* the streak resets only when the server answers a call (a result, an error result included).

After ``failure_threshold`` counted failures in a row the circuit opens: calls fail at once with
the last error, and after ``cooldown_seconds`` one more start is tried with the streak at
``failure_threshold - 1``, so one more counted failure opens the circuit again and the first
answered call closes it. A server that starts fine but crashes on every call therefore stops being
restarted after ``failure_threshold`` calls instead of being restarted forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import anyio
import jsonschema
import mcp_types as types
from anyio.abc import Process
from mcp.client.session import ClientSession, IncomingMessage
from mcp.client.streamable_http import streamable_http_client
from mcp.shared._httpx_utils import create_mcp_http_client

from kernel.config.models import McpServerConfig
from kernel.config.references import Reference, UnresolvedReference, find_references
from kernel.governance import secret_values
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

#: States in which a caller gets no session without waiting.
_TERMINAL = (DISABLED, STOPPED, CIRCUIT_OPEN)


@dataclass
class SupervisorPolicy:
    """Restart, circuit-breaker and tool-refresh tuning (defaults suit production; tests shorten them).

    ``stable_seconds``: an idle break this soon after becoming ready counts as a failure, as a
    failed start does. ``refresh_interval``: how often a ready server's tools are listed again
    besides when it says they changed; ``math.inf`` turns the periodic listing off.
    """

    backoff_initial: float = 0.5
    backoff_max: float = 30.0
    failure_threshold: int = 5
    cooldown_seconds: float = 60.0
    liveness_interval: float = 0.5
    stable_seconds: float = 30.0
    refresh_interval: float = 300.0


@dataclass
class ToolSpec:
    """A tool the server offers and the config lets through, with its compiled input validator."""

    name: str
    description: str | None
    input_schema: dict[str, Any]
    validator: Any = field(repr=False, default=None)

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


async def resolve_text(text: str, resolver: Resolver, secrets: set[str], where: str = "") -> str:
    """``text`` with every reference resolved; adds each resolved value to ``secrets``.

    A reference that cannot be resolved raises ``UnresolvedReference`` naming ``where`` (the config
    field) and the reference, never a value.
    """
    prefix = f"{where}: " if where else ""
    result = text
    for reference in find_references(text):
        try:
            value = await resolver(reference)
        except UnresolvedReference as error:
            raise UnresolvedReference(f"{prefix}{error}") from None
        except Exception as error:  # a failing secret store: name the reference, keep its reason
            raise UnresolvedReference(f"{prefix}cannot resolve {reference} ({type(error).__name__}: {error})") from None
        if value:
            secrets.add(value)
            if reference.source == "secret":
                secret_values.remember(value)
        result = result.replace(str(reference), value)
    return result


def innermost_error(error: BaseException) -> BaseException:
    """The first real exception inside (possibly nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        inner = [e for e in error.exceptions if not isinstance(e, asyncio.CancelledError)] or list(error.exceptions)
        error = inner[0]
    return error


class _Broken(RuntimeError):
    """A start or session failure whose message already says all that matters."""


class ServerSupervisor:
    """One declared server: its supervisor task, its session, its tools and its failure streak."""

    def __init__(
        self,
        config: McpServerConfig,
        *,
        app_root: Path,
        environ: Mapping[str, str],
        resolver: Resolver,
        policy: SupervisorPolicy,
    ) -> None:
        self.config = config
        self.state = STARTING if config.enabled else DISABLED
        self.last_error: str | None = None
        self.restarts = 0
        self.consecutive_failures = 0
        self.tools: dict[str, ToolSpec] = {}
        self.session: ClientSession | None = None
        self.tools_refreshed_at: datetime | None = None
        self.circuit_open_until: datetime | None = None
        self._app_root = app_root
        self._environ = environ
        self._resolver = resolver
        self._policy = policy
        self._secrets: set[str] = set()
        self._wake = asyncio.Event()  # the serving loop or a back-off sleep has something to look at
        self._changed = asyncio.Event()  # replaced at every state change; waiters watch the current one
        self._settled = asyncio.Event()  # the first start attempt has finished, either way
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._attempts = 0
        self._in_flight = 0  # requests under way (a live count, not reset between sessions)
        # The current session's story, reset at each start attempt.
        self._ready_at: float | None = None
        self._broke_in_call = False
        self._break_reason: str | None = None
        self._refresh_requested = False

    # -- messages -------------------------------------------------------------------------------

    def redact(self, text: str) -> str:
        """``text`` without any value resolved from this server's references."""
        for secret in sorted(self._secrets, key=len, reverse=True):
            text = text.replace(secret, "[redacted]")
        return text

    def describe(self, error: BaseException) -> str:
        """A one-line, secret-free account of ``error`` for health, logs and raised errors."""
        leaf = innermost_error(error)
        if isinstance(leaf, _Broken):
            message = str(leaf)
        elif isinstance(leaf, FileNotFoundError) and self.config.transport == "stdio":
            message = f"command not found: {self.config.command!r} ({leaf.strerror})"
        elif isinstance(leaf, TimeoutError):
            message = f"timed out after {self.config.timeouts.startup_seconds:g} s while starting"
        elif isinstance(leaf, OSError):
            message = str(leaf) or type(leaf).__name__
        else:
            message = f"{type(leaf).__name__}: {str(leaf) or type(leaf).__name__}"
        return self.redact(message)

    def health(self) -> dict[str, Any]:
        """State, availability, last error, restarts, streak, tool count and times; never a value
        of the server's env, headers or references."""
        return {
            "id": self.config.id,
            "transport": self.config.transport,
            "state": self.state,
            "available": self.state == READY,
            "last_error": self.last_error,
            "restarts": self.restarts,
            "consecutive_failures": self.consecutive_failures,
            "tool_count": len(self.tools) if self.state == READY else 0,
            "circuit_open_until": _iso(self.circuit_open_until),
            "tools_refreshed_at": _iso(self.tools_refreshed_at),
        }

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        if self.config.enabled and self._task is None:
            self._task = asyncio.create_task(self._supervise(), name=f"mcp-server:{self.config.id}")

    async def wait_settled(self) -> None:
        await self._settled.wait()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
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
            self._set_state(STOPPED)

    # -- what callers see and report --------------------------------------------------------------

    async def wait_for_session(self, timeout: float) -> ClientSession | None:
        """The open session, waiting up to ``timeout`` for a start or restart in progress; ``None``
        at once when the server is disabled, stopped or its circuit is open."""
        deadline = time.monotonic() + timeout
        while True:
            if self.session is not None:
                return self.session
            remaining = deadline - time.monotonic()
            if self.state in _TERMINAL or remaining <= 0:
                return None
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=remaining)

    @contextlib.contextmanager
    def call_in_flight(self) -> Iterator[None]:
        """Mark a request as in flight, so a break meanwhile counts toward the breaker."""
        self._in_flight += 1
        try:
            yield
        finally:
            self._in_flight -= 1

    def call_answered(self) -> None:
        """The server answered a call: it works, so its failure streak ends."""
        self.consecutive_failures = 0

    def call_broke(self, session: ClientSession, reason: str) -> None:
        """A call found ``session`` broken: end it (if still current) and count the break."""
        if session is not self.session:
            return  # the supervisor already noticed and moved on
        self._break_reason = self.redact(reason)
        self._broke_in_call = True
        self.session = None
        self._wake.set()

    async def refresh_tools(self) -> None:
        """List the tools of the open session again, now; raises when that fails."""
        session = self.session
        if session is None:
            return
        with anyio.fail_after(self.config.timeouts.startup_seconds):
            self._take_listing(await _list_all_tools(session))

    # -- the supervisor task ----------------------------------------------------------------------

    async def _supervise(self) -> None:
        policy = self._policy
        while not self._stopping:
            if self._attempts:
                self.restarts += 1
            self._attempts += 1
            self._ready_at, self._broke_in_call = None, False
            self._break_reason, self._refresh_requested = None, False
            self._set_state(STARTING)
            failure: str | None = None
            try:
                await self._run_once()
            except Exception as error:  # noqa: BLE001 - every failure is reported, none escapes
                failure = self.describe(error)
            self.session = None
            self._settled.set()
            if self._stopping:
                break
            self.last_error = "; ".join(part for part in (self._break_reason, failure) if part) or "the session ended"
            if not self._counts_as_failure():
                logger.warning("MCP server %s stopped after a stable run: %s", self.config.id, self.last_error)
                self._set_state(FAILED)
                await self._sleep(policy.backoff_initial)
                continue
            self.consecutive_failures += 1
            logger.warning(
                "MCP server %s failed (%d in a row): %s", self.config.id, self.consecutive_failures, self.last_error
            )
            if self.consecutive_failures >= policy.failure_threshold:
                await self._hold_circuit_open()
            else:
                self._set_state(FAILED)
                await self._sleep(min(policy.backoff_initial * 2 ** min(self.consecutive_failures - 1, 30),
                                      policy.backoff_max))

    def _counts_as_failure(self) -> bool:
        """The breaker's rule (see the module docstring)."""
        if self._ready_at is None or self._broke_in_call:
            return True
        return time.monotonic() - self._ready_at < self._policy.stable_seconds

    async def _hold_circuit_open(self) -> None:
        policy = self._policy
        self.circuit_open_until = datetime.now(timezone.utc) + timedelta(seconds=policy.cooldown_seconds)
        self._set_state(CIRCUIT_OPEN)
        logger.warning(
            "MCP server %s: circuit open for %g s after %d consecutive failures (last: %s)",
            self.config.id, policy.cooldown_seconds, self.consecutive_failures, self.last_error,
        )
        await self._sleep(policy.cooldown_seconds)
        self.circuit_open_until = None
        # half-open: one attempt; one more counted failure reopens the circuit at once
        self.consecutive_failures = policy.failure_threshold - 1

    def _set_state(self, state: str) -> None:
        self.state = state
        self._changed.set()
        self._changed = asyncio.Event()

    async def _sleep(self, seconds: float) -> None:
        """Sleep, unless stopped meanwhile."""
        self._wake.clear()
        if self._stopping:
            return
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _run_once(self) -> None:
        """Start the server, serve until it breaks, is recycled or stopped, then clean up."""
        if self.config.transport == "stdio":
            await self._run_stdio()
            return
        url = await self._resolve(self.config.url or "", "url")
        headers = {
            name: await self._resolve(value, f"headers[{name!r}]") for name, value in self.config.headers.items()
        }
        async with create_mcp_http_client(headers=headers) as client:
            async with streamable_http_client(url, http_client=client) as (read, write):
                await self._serve(read, write, lambda: False)

    async def _run_stdio(self) -> None:
        command, args, cwd, env = await self._launch()
        with tempfile.TemporaryFile(mode="w+b") as stderr:
            async with isolated_stdio_client(command, args, env, cwd, stderr) as (read, write, process):
                failure: Exception | None = None
                try:
                    await self._serve(read, write, lambda: process.returncode is not None)
                except Exception as error:
                    failure = error
                if self._stopping:
                    return
                await _wait_for_exit(process, 0.5)
                if process.returncode is not None:
                    tail = _tail(stderr)
                    detail = f"; stderr: {self.redact(tail)}" if tail else ""
                    cause = f"{self.describe(failure)}; " if failure is not None else ""
                    raise _Broken(f"{cause}process exited with code {process.returncode}{detail}")
                if failure is not None:
                    raise failure

    async def _launch(self) -> tuple[str, list[str], Path, dict[str, str]]:
        """The stdio command, args, working directory (relative to the app root unless absolute)
        and environment, references resolved."""
        config = self.config
        command = await self._resolve(config.command or "", "command")
        args = [await self._resolve(arg, f"args[{index}]") for index, arg in enumerate(config.args)]
        cwd = self._app_root / await self._resolve(config.cwd, "cwd") if config.cwd else self._app_root
        env = {name: self._environ[name] for name in INHERITED_VARIABLES if name in self._environ}
        for name, value in config.env.items():
            env[name] = await self._resolve(value, f"env[{name!r}]")
        if not cwd.is_dir():
            raise _Broken(f"working directory not found: {cwd}")
        return command, args, cwd, env

    async def _resolve(self, text: str, where: str) -> str:
        return await resolve_text(text, self._resolver, self._secrets, where)

    async def _serve(self, read: Any, write: Any, exited: Callable[[], bool]) -> None:
        """Initialize and list the tools, then hold the session until it breaks, is recycled or
        stopped, listing the tools again when due."""
        policy = self._policy
        async with ClientSession(read, write, message_handler=self._on_message) as session:
            with anyio.fail_after(self.config.timeouts.startup_seconds):
                await session.initialize()
                self._take_listing(await _list_all_tools(session))
            self._ready_at = time.monotonic()
            self.session = session
            self.last_error = None
            self._set_state(READY)
            self._settled.set()
            logger.info("MCP server %s ready with %d tools", self.config.id, len(self.tools))
            next_refresh = time.monotonic() + policy.refresh_interval
            while True:
                self._wake.clear()
                if self._stopping or self._break_reason is not None or exited():
                    break
                if self._refresh_requested or time.monotonic() >= next_refresh:
                    await self._refresh_quietly(session)
                    next_refresh = time.monotonic() + policy.refresh_interval
                    continue
                timeout = min(policy.liveness_interval, next_refresh - time.monotonic())
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.0))
            if self._in_flight:  # it broke under a call whose error has not arrived yet
                self._broke_in_call = True
            self.session = None

    async def _on_message(self, message: IncomingMessage) -> None:
        """The server said its tools changed: have the supervisor task list them again (the
        handler runs on the session's receive path, so it must not wait for a request itself)."""
        if isinstance(message, types.ToolListChangedNotification):
            self._refresh_requested = True
            self._wake.set()

    async def _refresh_quietly(self, session: ClientSession) -> None:
        """List the tools again; on failure keep the previous list (a dead session is noticed by
        the liveness check or the next call)."""
        why = "the server said they changed" if self._refresh_requested else "periodic"
        self._refresh_requested = False
        try:
            with anyio.fail_after(self.config.timeouts.startup_seconds):
                listed = await _list_all_tools(session)
        except Exception as error:  # noqa: BLE001
            logger.warning("MCP server %s: listing its tools again failed, keeping the previous list: %s",
                           self.config.id, self.describe(error))
            return
        self._take_listing(listed)
        logger.info("MCP server %s: tools listed again (%s), %d kept", self.config.id, why, len(self.tools))

    def _take_listing(self, tools: Iterable[types.Tool]) -> None:
        """Adopt a tool listing, filtered by the config's include/exclude."""
        include = self.config.tools.include
        exclude = set(self.config.tools.exclude)
        kept: dict[str, ToolSpec] = {}
        for tool in tools:
            if (include is not None and tool.name not in include) or tool.name in exclude:
                continue
            schema = dict(tool.input_schema or {"type": "object"})
            validator_class = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
            kept[tool.name] = ToolSpec(tool.name, tool.description, schema, validator_class(schema))
        self.tools = kept
        self.tools_refreshed_at = datetime.now(timezone.utc)


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


async def _wait_for_exit(process: Process, seconds: float) -> None:
    """Give a process that is going away a moment to be reaped, so its exit code can be reported."""
    with anyio.move_on_after(seconds):
        while process.returncode is None:
            await anyio.sleep(0.02)


def _tail(stream: Any, limit: int = 400) -> str:
    with contextlib.suppress(Exception):
        stream.flush()
        stream.seek(0, os.SEEK_END)
        size = stream.tell()
        stream.seek(max(0, size - limit))
        return stream.read().decode("utf-8", "replace").strip()
    return ""


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat(timespec="milliseconds") if moment is not None else None
