"""In-process transport for the SDK's ``DurableOrchestrationClient`` inside the embedded host.

On the Functions host, a durable client talks to the Durable extension over loopback HTTP. In the
embedded host the extension's API is our own ``DurableApi`` on the same event loop, so a client
call over the socket (aiohttp client, HTTP parsing, aiohttp server, back again) costs far more
than the API call itself: three such calls per agent turn in the wake function.

The SDK client keeps its request functions (``post_async_request``, ``get_async_request``,
``delete_async_request`` of ``azure.durable_functions.models.utils.http_utils``) as module
globals of its client module and copies them onto each client. ``install()`` replaces those
globals with wrappers that look at the URL: a URL under the base URL of a running embedded host
that opted in (``register``) goes straight to that host's ``DurableApi``; any other URL goes to
the SDK's own function, unchanged. The SDK still builds every URL and body and parses every
response: the wrapper only carries the request. Nothing is patched until an embedded host
starts, so ``func start`` is untouched.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlsplit

from .durable_api import ApiRequest, DurableApi, value_text

_CLIENT_MODULE = "azure.durable_functions.models.DurableOrchestrationClient"
_FUNCTIONS = ("post_async_request", "get_async_request", "delete_async_request")


@dataclass(frozen=True)
class _Target:
    api: DurableApi
    loop: asyncio.AbstractEventLoop


#: base URL (scheme://host:port) of each registered host -> its API and the loop it runs on
_targets: dict[str, _Target] = {}
_originals: dict[str, Callable[..., Awaitable[Any]]] = {}
#: requests carried in process, by method (tests and the bench read it)
calls: dict[str, int] = {"GET": 0, "POST": 0, "DELETE": 0}


def register(base_url: str, api: DurableApi, loop: asyncio.AbstractEventLoop) -> None:
    """Route client requests under ``base_url`` to ``api`` (whose engine runs on ``loop``)."""
    install()
    _targets[base_url.rstrip("/")] = _Target(api, loop)


def unregister(base_url: str) -> None:
    _targets.pop(base_url.rstrip("/"), None)


def install() -> None:
    """Wrap the SDK client's request functions (once per process)."""
    if _originals:
        return
    module = importlib.import_module(_CLIENT_MODULE)
    for name in _FUNCTIONS:
        _originals[name] = getattr(module, name)
    module.post_async_request = _post
    module.get_async_request = _get
    module.delete_async_request = _delete


@dataclass(frozen=True)
class _Route:
    target: _Target
    handler: Callable[[ApiRequest], Any]
    match: dict[str, str]
    url: SplitResult


def _route(method: str, url: str) -> _Route | None:
    """The registered host and handler for ``url``; None sends the request over HTTP as the SDK does."""
    if not _targets:
        return None
    parsed = urlsplit(url)
    target = _targets.get(f"{parsed.scheme}://{parsed.netloc}")
    if target is None:
        return None
    resolved = target.api.resolve(method, parsed.path)
    if resolved is None:  # not an API route: let the host's HTTP server answer it
        return None
    return _Route(target, resolved[0], resolved[1], parsed)


async def _post(url: str, data: Any = None, trace_parent: str | None = None, trace_state: str | None = None,
                function_invocation_id: str | None = None) -> list[Any]:
    route = _route("POST", url)
    if route is None:
        return await _originals["post_async_request"](url, data, trace_parent, trace_state, function_invocation_id)
    # as aiohttp's json= sends it: no body for None, else the JSON text (the SDK double-encodes input)
    if data is None:
        return await _call(route, "POST", "", "application/octet-stream")
    if isinstance(data, str):  # the SDK's JSON text of its input: handed over as is, not encoded again
        return await _call(route, "POST", "", "application/json", value_json=value_text(data))
    return await _call(route, "POST", json.dumps(data), "application/json")


async def _get(url: str, function_invocation_id: str | None = None) -> list[Any]:
    route = _route("GET", url)
    if route is None:
        return await _originals["get_async_request"](url, function_invocation_id)
    status, value = await _call(route, "GET", "", "application/octet-stream")
    return [status, "" if value is None else value]  # what the SDK's get returns for an empty body


async def _delete(url: str, function_invocation_id: str | None = None) -> list[Any]:
    route = _route("DELETE", url)
    if route is None:
        return await _originals["delete_async_request"](url, function_invocation_id)
    return await _call(route, "DELETE", "", "application/octet-stream")


async def _call(route: _Route, method: str, body: str, content_type: str, value_json: str | None = None) -> list[Any]:
    query: dict[str, str] = {}
    for key, value in parse_qsl(route.url.query, keep_blank_values=True):
        query.setdefault(key, value)  # the first value, as aiohttp's request.query.get gives it
    request = ApiRequest(route.match, query, body, content_type, route.url.geturl(), value_json)
    calls[method] += 1
    try:
        running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is route.target.loop:
        response = route.handler(request)
    else:  # a client used from another thread's loop: the engine's state belongs to its own loop
        async def on_engine_loop() -> Any:
            return route.handler(request)

        response = await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_engine_loop(), route.target.loop))
    return [response.status, response.json_value()]
