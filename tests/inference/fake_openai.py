"""A fake OpenAI-compatible server: TEST INFRASTRUCTURE, not a model and not part of the platform.

A real aiohttp HTTP server on ``127.0.0.1`` (an ephemeral port) that speaks just enough of the
OpenAI wire format for the inference provider to be tested end to end, through the real
``openai`` client and a real socket:

* ``POST /v1/chat/completions`` — answers from a script, or echoes ``"fake: <last user message>"``.
  With ``strict_models=True`` a request naming a model that is not in ``models`` gets the 404
  vLLM sends for an adapter it does not serve (no script entry is used).
* ``GET /v1/models`` — lists ``models`` (counted in ``model_listings``).

Usage::

    async with FakeOpenAI() as server:
        server.reply(content="hello")                       # next answer
        server.reply(tool_calls=[{"name": "fs__ls", "arguments": {"path": "."}}])
        server.fail(status=500, message="overloaded")       # next answer is an error
        server.fail(status=429, headers={"Retry-After": "1"})  # ... with response headers
        server.delay(2.0)                                    # the next answer comes 2 s late
        provider = OpenAICompatibleProvider(server.base_url, ...)
        ...
        assert server.requests[0]["model"] == "cfo-finance"

Scripted entries are used in order, one per request (a ``delay`` entry delays whatever answers
next); when the script is empty the echo reply is used. Every received request body is kept in
``server.requests``, its ``Authorization`` header (or ``None``) in ``server.authorizations``, all
its headers (lower-case names) in ``server.headers`` and its arrival time (``time.monotonic``) in
``server.arrivals``. ``latency`` delays every answer; ``max_in_flight`` is the most requests the
server was answering at once. A body that is not a JSON object with a non-empty ``messages`` list
gets a 400.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


@dataclass
class _Reply:
    content: str | None
    tool_calls: list[dict[str, Any]]
    model: str | None
    usage: dict[str, int] | None


@dataclass
class _Failure:
    status: int
    message: str
    headers: dict[str, str] | None = None


@dataclass
class _Delay:
    seconds: float


@dataclass
class _Raw:
    status: int
    body: str
    content_type: str = "application/json"


@dataclass
class FakeOpenAI:
    """An OpenAI-compatible chat-completions server for tests (see the module docstring)."""

    models: tuple[str, ...] = ("fake-model",)
    host: str = "127.0.0.1"
    strict_models: bool = False
    latency: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list, init=False)
    authorizations: list[str | None] = field(default_factory=list, init=False)
    headers: list[dict[str, str]] = field(default_factory=list, init=False)
    arrivals: list[float] = field(default_factory=list, init=False)
    model_listings: int = field(default=0, init=False)
    in_flight: int = field(default=0, init=False)
    max_in_flight: int = field(default=0, init=False)
    _script: deque[_Reply | _Failure | _Delay | _Raw] = field(default_factory=deque, init=False)
    _runner: web.AppRunner | None = field(default=None, init=False)
    _port: int | None = field(default=None, init=False)
    _closing: asyncio.Event | None = field(default=None, init=False)
    _count: int = field(default=0, init=False)

    # -- scripting -------------------------------------------------------------------------------

    def reply(
        self,
        content: str | None = "",
        tool_calls: list[dict[str, Any]] | None = None,
        *,
        model: str | None = None,
        usage: dict[str, int] | None = None,
    ) -> FakeOpenAI:
        """Queue a successful answer.

        ``tool_calls`` items are ``{"name": ..., "arguments": dict | str, "id": optional}``; a
        ``str`` argument is sent verbatim (to test invalid JSON). ``model`` defaults to the model
        the request named, as vLLM and Ollama do.
        """
        self._script.append(_Reply(content, list(tool_calls or []), model, usage))
        return self

    def fail(self, status: int = 500, message: str = "fake failure", *,
             headers: dict[str, str] | None = None) -> FakeOpenAI:
        """Queue an error answer with an OpenAI-shaped error body (and ``headers``, e.g. Retry-After)."""
        self._script.append(_Failure(status, message, headers))
        return self

    @property
    def pending(self) -> int:
        """Scripted entries not used yet."""
        return len(self._script)

    def delay(self, seconds: float) -> FakeOpenAI:
        """Delay the next answer (scripted or echo) by ``seconds``."""
        self._script.append(_Delay(seconds))
        return self

    def raw(self, body: str, *, status: int = 200, content_type: str = "application/json") -> FakeOpenAI:
        """Queue a verbatim response body (to test malformed answers)."""
        self._script.append(_Raw(status, body, content_type))
        return self

    # -- lifecycle -------------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The OpenAI base URL of this server, ending in ``/v1``."""
        if self._port is None:
            raise RuntimeError("FakeOpenAI is not started; use 'async with FakeOpenAI() as server'")
        return f"http://{self.host}:{self._port}/v1"

    async def start(self) -> FakeOpenAI:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self._chat_completions)
        app.router.add_get("/v1/models", self._list_models)
        self._closing = asyncio.Event()
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self._port = self._runner.addresses[0][1]
        return self

    async def close(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeOpenAI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- handlers --------------------------------------------------------------------------------

    async def _list_models(self, request: web.Request) -> web.Response:
        self.model_listings += 1
        data = [{"id": name, "object": "model", "created": 0, "owned_by": "fake-openai"} for name in self.models]
        return web.json_response({"object": "list", "data": data})

    async def _chat_completions(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await self._answer(request)
        finally:
            self.in_flight -= 1

    async def _answer(self, request: web.Request) -> web.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        self.headers.append({name.lower(): value for name, value in request.headers.items()})
        self.arrivals.append(time.monotonic())
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, "request body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "request body is not a JSON object")
        self.requests.append(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return _error(400, "'messages' is required and must be a non-empty list")
        if self.latency:
            await self._sleep(self.latency)
        if self.strict_models and body.get("model") not in self.models:
            return _error(404, f"The model `{body.get('model')}` does not exist.")

        entry = self._script.popleft() if self._script else None
        while isinstance(entry, _Delay):
            await self._sleep(entry.seconds)
            entry = self._script.popleft() if self._script else None
        if isinstance(entry, _Failure):
            return _error(entry.status, entry.message, entry.headers)
        if isinstance(entry, _Raw):
            return web.Response(status=entry.status, text=entry.body, content_type=entry.content_type)
        if entry is None:
            entry = _Reply(f"fake: {_last_user_text(messages)}", [], None, None)
        return web.json_response(self._completion(body, messages, entry))

    async def _sleep(self, seconds: float) -> None:
        assert self._closing is not None
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except asyncio.TimeoutError:
            pass

    def _completion(self, body: dict[str, Any], messages: list[Any], reply: _Reply) -> dict[str, Any]:
        self._count += 1
        calls = []
        for index, call in enumerate(reply.tool_calls):
            arguments = call.get("arguments", {})
            calls.append({
                "id": call.get("id", f"call_fake_{self._count}_{index}"),
                "type": "function",
                "function": {
                    "name": call["name"],
                    "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments),
                },
            })
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if calls:
            message["tool_calls"] = calls
        prompt = sum(len(_text(m.get("content")).split()) for m in messages if isinstance(m, dict))
        produced = len((reply.content or "").split())
        usage = reply.usage or {"prompt_tokens": prompt, "completion_tokens": produced}
        usage = {**usage, "total_tokens": usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)}
        return {
            "id": f"chatcmpl-fake-{self._count}",
            "object": "chat.completion",
            "created": 0,
            "model": reply.model or str(body.get("model") or "fake-model"),
            "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop"}],
            "usage": usage,
        }


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return web.json_response({"error": {"message": message, "type": kind, "param": None, "code": None}}, status=status,
                             headers=headers)


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def _last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return _text(message.get("content"))
    return ""
