"""``EmbeddedHost``: run a v2-model Functions app in-process, playing the Functions host's part.

It indexes the app, opens the SQLite state (in memory or a file), declares the bus topology,
serves HTTP triggers and the Durable HTTP API on a loopback port, and runs the scheduler.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import aiohttp
from aiohttp import web
import azure.durable_functions as df

from kernel import durability

from .bus import EmbeddedBus, OutgoingMessage
from .clock import Clock, RealClock
from . import client_transport
from .durable_api import DurableApi, add_routes, client_binding
from .engine import Engine
from .http import AuthKeys, HttpResult, HttpTriggers
from .indexing import AppIndex, FunctionSpec, index_app, load_app
from .invoke import Invocation, invoke
from .mcp_webhook import MCP_WEBHOOK_PATH, McpWebhook
from .settings import Settings, load_host_json, route_prefix
from .store import Store, connect
from .topology import declare, load_topology
from .triggers import ServiceBusTriggers, TimerTriggers, send_outputs

log = logging.getLogger("aos.engine")

#: How many running instances keep their SDK replay between episodes (kernel/engine/replay.py).
REPLAY_CACHE_SETTING = "AOS_ENGINE_REPLAY_CACHE"
DEFAULT_REPLAY_CACHE = 256
#: How the app's durable clients reach the engine: ``direct`` (in process) or ``http`` (loopback).
DURABLE_CLIENT_SETTING = "AOS_ENGINE_DURABLE_CLIENT"
DURABLE_CLIENT_MODES = ("direct", "http")


def replay_cache_setting(value: str | None) -> int:
    """``AOS_ENGINE_REPLAY_CACHE``: a whole number of instances, 0 to replay every episode in full."""
    if value is None or not value.strip():
        return DEFAULT_REPLAY_CACHE
    try:
        count = int(value)
    except ValueError:
        count = -1
    if count < 0:
        raise ValueError(f"setting {REPLAY_CACHE_SETTING}={value!r}: expected a whole number of instances "
                         f"(0 replays every episode in full; default {DEFAULT_REPLAY_CACHE})")
    return count


def durable_client_setting(value: str | None) -> str:
    """``AOS_ENGINE_DURABLE_CLIENT``: ``direct`` (default) or ``http``."""
    mode = (value or "").strip().lower() or "direct"
    if mode not in DURABLE_CLIENT_MODES:
        raise ValueError(f"setting {DURABLE_CLIENT_SETTING}={value!r}: expected 'direct' (the app's durable clients "
                         "call the engine in process) or 'http' (over the loopback Durable HTTP API)")
    return mode


class EmbeddedHost:
    """Async context manager that runs ``app`` until exit. See docs/engine.md."""

    def __init__(self, app: Any, *, state_path: str | Path | None = None,
                 settings: Settings | Mapping[str, Any] | str | Path | None = None, clock: Clock | None = None,
                 topology: Mapping[str, Any] | str | Path | None = None, port: int = 0, bind: str = "127.0.0.1",
                 max_concurrent_activities: int | None = None, max_concurrent_calls: int | None = None,
                 replay_cache: int | None = None, durable_client: str | None = None) -> None:
        self._app_source = app
        self.state_path = str(state_path) if state_path is not None else None
        self.settings = Settings.load(settings)
        self.clock: Clock = clock or RealClock()
        self._topology_source = topology
        self.port = port
        self.bind = bind
        self.max_concurrent_activities = max_concurrent_activities
        self.max_concurrent_calls = max_concurrent_calls
        self.replay_cache = replay_cache
        self.durable_client = durable_client
        self.base_url = ""
        self.master_key = ""
        self._client: df.DurableOrchestrationClient | None = None
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self._stopped = False

    # lifecycle -------------------------------------------------------------------------------
    async def __aenter__(self) -> "EmbeddedHost":
        app, app_dir = load_app(self._app_source)
        self.app_dir = app_dir
        self.index: AppIndex = index_app(app, app_dir, self.settings)
        self.host_json = load_host_json(app_dir)
        extensions = self.host_json.get("extensions") if isinstance(self.host_json.get("extensions"), dict) else {}
        durable = extensions.get("durableTask") or {}
        bus_settings = extensions.get("serviceBus") or {}
        if self.max_concurrent_activities is None:
            self.max_concurrent_activities = int(durable.get("maxConcurrentActivityFunctions") or 64)
        if self.max_concurrent_calls is None:
            self.max_concurrent_calls = int(bus_settings.get("maxConcurrentCalls") or 16)
        self.max_batch = int(bus_settings.get("maxMessageBatchSize") or 100)
        if self.replay_cache is None:
            self.replay_cache = replay_cache_setting(self.settings.get(REPLAY_CACHE_SETTING))
        self.durable_client = durable_client_setting(
            self.durable_client if self.durable_client is not None else self.settings.get(DURABLE_CLIENT_SETTING))
        hub = str(durable.get("hubName") or "")
        try:
            self.task_hub = self.settings.resolve(hub, where="host.json durableTask.hubName") if hub else "EmbeddedHub"
        except ValueError:
            self.task_hub = "EmbeddedHub"
        self.sync_mode = durability.sync_mode(self.settings.get(durability.SETTING))
        self.conn = connect(self.state_path, durability.sqlite_synchronous(self.sync_mode))
        try:
            self.store = Store(self.conn)
            self.bus = EmbeddedBus(self.conn, clock=self.clock.now)
            with self.store.transaction():
                declare(self.bus, self.index, load_topology(self._topology_source, self.settings))
            if isinstance(self._topology_source, Mapping):
                self._topology_source = None  # declared: the bus holds the rules (ten thousand agents, ten thousand rules)
            # The host owns its state folder: locks still held are a dead predecessor's, so its
            # in-flight messages are delivered again now instead of after their lock duration.
            self.bus.release_all_locks()
        except BaseException:
            self.conn.close()
            raise
        self.master_key = self.settings.get("AOS_MASTER_KEY") or secrets.token_urlsafe(24)
        function_keys = {k.strip() for k in (self.settings.get("AOS_FUNCTION_KEYS") or "").split(",") if k.strip()}
        self.keys = AuthKeys(function_keys, self.master_key)
        self.executor = ThreadPoolExecutor(max_workers=max(4, self.max_concurrent_activities), thread_name_prefix="aos-fn")
        self.engine = Engine(self.index, self.store, self.clock, self._invoke,
                             max_concurrent_activities=self.max_concurrent_activities, executor=self.executor,
                             http_caller=self._durable_http, replay_cache=self.replay_cache)
        self.http_triggers = HttpTriggers(self.index, route_prefix(self.host_json), self.keys, self._invoke)
        # MCP tool triggers: one MCP server at /runtime/webhooks/mcp, mounted only when the app has tools.
        self.mcp_webhook = McpWebhook(self.index, self.keys, self._invoke, host_json=self.host_json, bind=self.bind)
        self.service_bus = ServiceBusTriggers(self.index, self.bus, self.store, self._invoke, self.engine.notify,
                                              max_concurrent_calls=self.max_concurrent_calls, max_batch=self.max_batch)
        self.timer_triggers = TimerTriggers(self.index, self.store, self.clock, self._invoke, self.engine.notify)
        self.engine.tick_hooks += [self.timer_triggers.tick, self.service_bus.poll]
        self.engine.busy_hooks += [self.service_bus.busy, self.timer_triggers.busy, lambda: self.http_triggers.inflight > 0,
                                 lambda: self.mcp_webhook.inflight > 0]
        self.engine.deadline_hooks += [self.service_bus.deadline, self.timer_triggers.deadline]
        self.durable_api = DurableApi(self.engine, lambda: self.base_url)
        await self._serve()
        self._client_json = client_binding(self.base_url, self.task_hub or "EmbeddedHub")
        if self.durable_client == "direct":
            client_transport.register(self.base_url, self.durable_api, asyncio.get_running_loop())
        self.engine.start()
        with self.store.transaction():
            self.timer_triggers.start(self.clock.now())
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def stop(self) -> None:
        """Stop the triggers (HTTP included) and the engine, and nothing else, so the apps' services
        (tables, blobs, the bus sender) can be closed next: a function still running after their
        close would fail on a closed adapter (a ticking engine records that as the step's failure)
        or open a new one nothing closes. A stopped engine drops the unfinished activity, which
        runs again at the next start."""
        if self._stopped:
            return
        self._stopped = True
        await self.mcp_webhook.close()
        await self.timer_triggers.stop()
        await self.service_bus.stop()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.engine.stop()

    async def close(self) -> None:
        await self.stop()
        client_transport.unregister(self.base_url)
        if self._session is not None:
            await self._session.close()
        from azure.durable_functions.models.utils import http_utils

        await http_utils._close_session()
        self.executor.shutdown(wait=False, cancel_futures=True)
        self.conn.close()

    async def _serve(self) -> None:
        web_app = web.Application(client_max_size=64 * 1024 * 1024)
        add_routes(web_app, self.durable_api)
        web_app.router.add_post("/admin/aos/bus/{entity:.+}", self._admin_send)
        if self.mcp_webhook.tools:
            web_app.router.add_route("*", MCP_WEBHOOK_PATH, self.mcp_webhook.handle)
            await self.mcp_webhook.start()
        web_app.router.add_route("*", "/{tail:.*}", self._http_trigger)
        self._runner = web.AppRunner(web_app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.bind, self.port)
        try:
            await site.start()
        except BaseException:
            await self.mcp_webhook.close()
            raise
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else self.port
        self.base_url = f"http://{self.bind}:{self.port}"

    # public API ------------------------------------------------------------------------------
    @property
    def client(self) -> df.DurableOrchestrationClient:
        """A ``DurableOrchestrationClient`` built by the SDK from the client binding JSON."""
        if self._client is None:
            self._client = df.DurableOrchestrationClient(self._client_json)
        return self._client

    async def wait_idle(self, timeout: float = 10.0) -> None:
        """Return when nothing is pending or running (timers and future messages excepted)."""
        await self.engine.wait_idle(timeout)

    async def send(self, entity: str, body: Any, *, properties: Mapping[str, Any] | None = None,
                   message_id: str | None = None, session_id: str | None = None, scheduled_at: datetime | None = None,
                   correlation_id: str | None = None, subject: str | None = None, content_type: str | None = None,
                   reply_to: str | None = None, to: str | None = None) -> list[int]:
        """Send a Service Bus message to a queue or topic (``UnknownEntityError`` if undeclared)."""
        if isinstance(body, bytes):
            raw = body
        elif isinstance(body, str):
            raw = body.encode("utf-8")
        else:
            raw = json.dumps(body).encode("utf-8")
            content_type = content_type or "application/json"
        message = OutgoingMessage(body=raw, message_id=message_id, content_type=content_type, correlation_id=correlation_id,
                                  session_id=session_id, subject=subject, reply_to=reply_to, to=to,
                                  application_properties=dict(properties or {}), scheduled_enqueue_time=scheduled_at)
        with self.store.transaction():
            numbers = self.bus.send(entity, message)
        self.service_bus.dirty = True
        self.engine.notify()
        return numbers

    async def http(self, method: str, path: str, *, json: Any = None, headers: Mapping[str, str] | None = None,
                   body: bytes | str | None = None) -> HttpResult:
        """Call an HTTP route of the app (in-process for triggers, over loopback for the webhook API)."""
        headers = dict(headers or {})
        data = body.encode("utf-8") if isinstance(body, str) else body
        if json is not None:
            import json as _json

            data = _json.dumps(json).encode("utf-8")
            headers.setdefault("Content-Type", "application/json")
        url = path if path.startswith("http") else self.base_url + (path if path.startswith("/") else "/" + path)
        if "/runtime/webhooks/" in url or "/durabletask/" in url or "/admin/aos/" in url:
            if self._session is None:
                self._session = aiohttp.ClientSession()
            async with self._session.request(method, url, data=data, headers=headers) as response:
                return HttpResult(response.status, dict(response.headers), await response.read())
        return await self.http_triggers.handle(method, url, headers, data or b"")

    # plumbing --------------------------------------------------------------------------------
    async def _invoke(self, spec: FunctionSpec, inputs: dict[str, Any]) -> Invocation:
        arguments = dict(inputs)
        for binding in spec.bindings:
            if binding.get("type") == "durableClient":
                arguments[str(binding["name"])] = self._client_json
        invocation = await invoke(spec, arguments, executor=self.executor, directory=str(self.app_dir or ""))
        if spec.trigger_type != "serviceBusTrigger" and any(b.get("type") == "serviceBus" for b in spec.outputs):
            with self.store.transaction():
                send_outputs(self.bus, spec, invocation)
            self.service_bus.dirty = True
            self.engine.notify()
        return invocation

    async def _http_trigger(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        url = f"{self.base_url}{request.rel_url}"
        result = await self.http_triggers.handle(request.method, url, dict(request.headers), body)
        headers = {k: v for k, v in result.headers.items() if k.lower() not in ("content-length", "transfer-encoding")}
        return web.Response(status=result.status, body=result.body, headers=headers)

    async def _admin_send(self, request: web.Request) -> web.Response:
        key = request.headers.get("x-functions-key") or request.query.get("code")
        if not self.keys.allows("ADMIN", key):
            return web.json_response({"error": "the master key is required (x-functions-key header or code=)"}, status=401)
        try:
            envelope = await request.json()
        except json.JSONDecodeError as error:
            return web.json_response({"error": f"body is not JSON: {error}"}, status=400)
        if not isinstance(envelope, dict) or "body" not in envelope:
            return web.json_response({"error": "send a JSON object with a 'body' field"}, status=400)
        from .bus import UnknownEntityError
        from .clock import parse_timestamp

        scheduled = envelope.get("scheduled_at")
        try:
            numbers = await self.send(
                request.match_info["entity"], envelope["body"], properties=envelope.get("properties"),
                message_id=envelope.get("message_id"), session_id=envelope.get("session_id"),
                scheduled_at=parse_timestamp(scheduled) if scheduled else None,
                correlation_id=envelope.get("correlation_id"), subject=envelope.get("subject"),
                content_type=envelope.get("content_type"), reply_to=envelope.get("reply_to"), to=envelope.get("to"),
            )
        except UnknownEntityError as error:
            return web.json_response({"error": str(error)}, status=404)
        except (TypeError, ValueError) as error:
            return web.json_response({"error": str(error)}, status=400)
        return web.json_response({"sequence_numbers": numbers}, status=202)

    async def _durable_http(self, request_json: str) -> str:
        """``context.call_http``: perform the request and return the extension's response shape."""
        request = json.loads(request_json)
        if request.get("tokenSource"):
            raise RuntimeError("call_http with a managed identity token source is not supported by the embedded engine")
        if self._session is None:
            self._session = aiohttp.ClientSession()
        content = request.get("content")
        async with self._session.request(str(request.get("method", "GET")), str(request["uri"]),
                                         data=content.encode("utf-8") if isinstance(content, str) else None,
                                         headers=request.get("headers") or {}) as response:
            text = await response.text()
            return json.dumps({"statusCode": response.status, "headers": dict(response.headers), "content": text})
