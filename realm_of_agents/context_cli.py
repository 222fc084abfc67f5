"""``aos context-mcp AGENT``: an agent's context MCP server over stdio, backed by a running platform.

Any MCP client (an IDE, a desktop assistant, another agent runtime) can attach to an agent's
memory, archive and goals by launching this command as a stdio MCP server. The tools and
resources are those of ``context_server.build_context_server``; they read and write through the
platform's HTTP API (:class:`HttpBackend`):

==========================  ============================================================
``state``                   ``GET  {url}/api/agents/{id}``
``search``                  ``GET  {url}/api/agents/{id}/memory?q=…&limit=N`` → ``{"results": […]}``
``read_turn``               ``GET  {url}/api/agents/{id}/turns/{turn_id}``
``remember``                ``POST {url}/api/agents/{id}/facts`` ``{"fact": …}``
``update_goal``             ``POST {url}/api/agents/{id}/goals/{goal_id}`` ``{change}``
``send_event``              ``POST {url}/api/agents/{to}/events`` ``{"type", "data", "source"}``
==========================  ============================================================

The key (``--key``, ``$AOS_MASTER_KEY``, or a local ``aos run``'s run file) goes in the ``x-functions-key`` header and nowhere
else: HTTP failures become tool errors naming the method, path and status, never the key. A
platform with ``AOS_AUTH=entra`` takes an Entra ID token instead (``--token``/``$AOS_TOKEN``, or
``--auth-scope``/``$AOS_AUTH_SCOPE`` to sign in with ``DefaultAzureCredential``, renewed before it
expires while the server runs), sent as ``Authorization: Bearer`` and, like the key, never shown.
Stdout carries the MCP protocol only; diagnostics go to stderr.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import click

from kernel import settings
from kernel.client import Bearer, SignInFailed, key_from_run_file
from realm_of_agents.context_server import ContextError, build_context_server, check_agent_id

__all__ = ["HttpBackend", "context_mcp"]

#: Longest part of an error response body quoted in a tool error.
_DETAIL_CHARS = 300


class HttpBackend:
    """A ``ContextBackend`` over a running platform's HTTP API (use ``async with`` or ``close``)."""

    def __init__(self, url: str, *, key: str | None = None, bearer: Bearer | None = None,
                 timeout_seconds: float = 30.0) -> None:
        self._origin = _origin(url)
        self.url = url.rstrip("/")
        self._headers = {"accept": "application/json"}
        if key:
            self._headers["x-functions-key"] = key
        self._bearer = bearer
        self._timeout = aiohttp.ClientTimeout(total=timeout_seconds)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> HttpBackend:
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- ContextBackend ----------------------------------------------------------------------

    async def state(self, agent_id: str) -> dict[str, Any]:
        body = await self._request("GET", f"/api/agents/{_segment(agent_id)}")
        if isinstance(body, dict) and "memory" not in body and isinstance(body.get("state"), dict):
            return body["state"]  # a view that wraps the state next to other fields
        return _expect_object(body, f"/api/agents/{_segment(agent_id)}")

    async def search(self, agent_id: str, query: str, limit: int) -> list[dict[str, Any]]:
        path = f"/api/agents/{_segment(agent_id)}/memory"
        body = await self._request("GET", path, params={"q": query, "limit": str(limit)})
        results = body.get("results") if isinstance(body, dict) else None
        if not isinstance(results, list):
            raise ContextError(f"GET {path}: the platform answered without a 'results' list")
        return results

    async def read_turn(self, agent_id: str, turn_id: str) -> dict[str, Any]:
        path = f"/api/agents/{_segment(agent_id)}/turns/{_segment(turn_id)}"
        return _expect_object(await self._request("GET", path), path)

    async def remember(self, agent_id: str, fact: str) -> dict[str, Any]:
        path = f"/api/agents/{_segment(agent_id)}/facts"
        return _expect_object(await self._request("POST", path, body={"fact": fact}), path)

    async def update_goal(self, agent_id: str, goal_id: str, change: dict[str, Any]) -> dict[str, Any]:
        path = f"/api/agents/{_segment(agent_id)}/goals/{_segment(goal_id)}"
        return _expect_object(await self._request("POST", path, body=change), path)

    async def send_event(self, agent_id: str, to: str, type: str, data: Any) -> dict[str, Any]:
        path = f"/api/agents/{_segment(to)}/events"
        body = {"type": type, "data": data, "source": agent_id}
        return _expect_object(await self._request("POST", path, body=body), path)

    # -- HTTP --------------------------------------------------------------------------------

    async def _request(self, method: str, path: str, *, params: dict[str, str] | None = None,
                       body: Any = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self._timeout, headers=self._headers)
        headers: dict[str, str] = {}
        if self._bearer is not None:
            try:
                token = await self._bearer.get()
            except SignInFailed as error:
                raise ContextError(f"{method} {path}: {error}") from None
            if token:
                headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._session.request(method, self.url + path, params=params, headers=headers,
                                             json=body if method == "POST" else None) as response:
                text = await response.text()
                status, reason = response.status, response.reason
        except asyncio.TimeoutError:
            raise ContextError(f"{method} {path}: the platform at {self._origin} did not answer in time") from None
        except aiohttp.ClientError as error:
            raise ContextError(f"{method} {path}: cannot reach the platform at {self._origin} ({type(error).__name__})") from None
        if status >= 400:
            raise ContextError(f"{method} {path} failed: HTTP {status} {reason or ''}".rstrip() + _detail(text))
        if not text.strip():
            return {}
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            raise ContextError(f"{method} {path}: the platform answered HTTP {status} with a body that is not JSON") from None


def _origin(url: str) -> str:
    """``scheme://host:port`` of a valid platform URL (what errors name: never user info or a query)."""
    parts = urlsplit(url) if isinstance(url, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"invalid platform URL {url!r}: expected http(s)://host[:port]")
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def _segment(value: str) -> str:
    """One URL path segment: ids are quoted so they cannot add segments or a query."""
    return quote(str(value), safe="")


def _expect_object(body: Any, path: str) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ContextError(f"{path}: the platform answered with {type(body).__name__}, expected a JSON object")
    return body


def _detail(text: str) -> str:
    """The error body's message: its JSON ``error``/``message`` field, else the text, clipped."""
    detail = text.strip()
    try:
        parsed = json.loads(detail)
    except (json.JSONDecodeError, ValueError):
        parsed = None
    if isinstance(parsed, dict):
        detail = str(parsed.get("error") or parsed.get("message") or detail)
    detail = " ".join(detail.split())
    if not detail:
        return ""
    return ": " + (detail if len(detail) <= _DETAIL_CHARS else detail[: _DETAIL_CHARS - 1] + "…")


async def serve_stdio(agent_id: str, url: str, key: str | None, bearer: Bearer | None = None) -> None:
    """Serve ``agent_id``'s context server on stdin/stdout until the client closes it."""
    async with HttpBackend(url, key=key, bearer=bearer) as backend:
        server = build_context_server(agent_id, backend)
        await server.run_stdio_async()


@click.command("context-mcp")
@click.argument("agent")
@click.option("--url", default=None,
              help="Base URL of the running platform (default: the AOS_URL setting, http://127.0.0.1:7071).")
@click.option("--key", envvar="AOS_MASTER_KEY", default=None,
              help="Key sent as x-functions-key (default: $AOS_MASTER_KEY, else the local `aos run` run file).")
@click.option("--state", "state_dir", default=".aos", show_default=True,
              help="State folder of a local `aos run` (where its run file with the key is).")
@click.option("--token", envvar="AOS_TOKEN", default=None,
              help="Entra ID token sent as Authorization: Bearer, for a platform with AOS_AUTH=entra "
                   "(default: $AOS_TOKEN).")
@click.option("--auth-scope", envvar="AOS_AUTH_SCOPE", default=None,
              help="Sign in with DefaultAzureCredential for this scope (api://<app-id>/.default) and keep the "
                   "token fresh while serving (default: $AOS_AUTH_SCOPE).")
def context_mcp(agent: str, url: str | None, key: str | None, state_dir: str, token: str | None,
                auth_scope: str | None) -> None:
    """Serve AGENT's context MCP server (memory, archive, goals) over stdio.

    Point an MCP client at this command to let it search the agent's memory, read archived turns,
    list and update goals, pin facts and send events, through the platform's HTTP API.
    """
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    backend_url = url or settings.get("AOS_URL")
    try:  # fail before taking over stdio
        check_agent_id(agent)
        _origin(backend_url)
    except ValueError as error:
        raise click.UsageError(str(error)) from None
    asyncio.run(serve_stdio(agent, backend_url, key or key_from_run_file(backend_url, Path(state_dir)),
                            Bearer(token, auth_scope)))


if __name__ == "__main__":
    context_mcp()
