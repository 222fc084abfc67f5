"""The Durable HTTP API, so the SDK's own ``DurableOrchestrationClient`` works unchanged.

Served over loopback HTTP under both ``/durabletask/`` (the ``rpcBaseUrl`` the client binding
carries) and ``/runtime/webhooks/durabletask/`` (the public webhook paths in
``create_check_status_response`` links). Status codes follow the extension's ``HttpApiHandler``:
202 while running, 200 when done, 404 unknown, 410 gone; starting an id that is still active is a
500 carrying the extension's "An Orchestration instance with the status ... already exists."
message.

The handlers take an ``ApiRequest`` and return an ``ApiResponse`` rather than aiohttp objects, so
the same code answers the loopback HTTP routes and the in-process client transport
(``client_transport.py``), which skips the socket for the app's own client calls.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from aiohttp import web

from .clock import format_timestamp, parse_timestamp
from .engine import Engine, InstanceExists, InstanceGone, InstanceNotFound, OrchestratorNotFound, PurgeRefused
from .records import is_json

PREFIXES = ("/durabletask", "/runtime/webhooks/durabletask")
TASK_HUB = "EmbeddedHub"


def client_binding(base_url: str, task_hub: str = TASK_HUB) -> str:
    """The JSON string the host passes for a ``durableClient`` binding."""
    webhook = f"{base_url}/runtime/webhooks/durabletask"
    query = f"taskHub={task_hub}&connection=Storage"
    return json.dumps({
        "taskHubName": task_hub,
        "creationUrls": {
            "createNewInstancePostUri": f"{webhook}/orchestrators/{{functionName}}[/{{instanceId}}]?{query}",
            "createAndWaitOnNewInstancePostUri": f"{webhook}/orchestrators/{{functionName}}[/{{instanceId}}]?timeout={{timeoutInSeconds}}&pollingInterval={{intervalInSeconds}}&{query}",
        },
        "managementUrls": management_urls(base_url, "INSTANCEID", task_hub),
        "baseUrl": webhook,
        "requiredQueryStringParameters": query,
        "rpcBaseUrl": f"{base_url}/durabletask/",
        "httpBaseUrl": "",
        "maxGrpcMessageSizeInBytes": 0,
    })


def management_urls(base_url: str, instance_id: str, task_hub: str = TASK_HUB) -> dict[str, str]:
    webhook = f"{base_url}/runtime/webhooks/durabletask/instances/{quote(instance_id, safe='')}"
    query = f"taskHub={task_hub}&connection=Storage"
    return {
        "id": instance_id,
        "purgeHistoryDeleteUri": f"{webhook}?{query}",
        "restartPostUri": f"{webhook}/restart?{query}",
        "resumePostUri": f"{webhook}/resume?reason={{text}}&{query}",
        "rewindPostUri": f"{webhook}/rewind?reason={{text}}&{query}",
        "sendEventPostUri": f"{webhook}/raiseEvent/{{eventName}}?{query}",
        "statusQueryGetUri": f"{webhook}?{query}",
        "suspendPostUri": f"{webhook}/suspend?reason={{text}}&{query}",
        "terminatePostUri": f"{webhook}/terminate?reason={{text}}&{query}",
    }


@dataclass(frozen=True)
class ApiRequest:
    """What a handler reads of a request: path parameters, query, body text, content type, URL."""

    match: Mapping[str, str]
    query: Mapping[str, str]
    body: str
    content_type: str
    url: str
    #: The body's value as JSON text, when an in-process caller has it already (see ``value_text``).
    value_json: str | None = None

    def json_text(self) -> str | None:
        """The JSON text of the value the request carries (``None``: no body)."""
        return self.value_json if self.value_json is not None else body_json_text(self.body)


@dataclass(frozen=True)
class ApiResponse:
    """``payload`` is the JSON value of the body (``None``: empty body); ``text`` a body already in JSON."""

    status: int
    payload: Any = None
    text: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def json_value(self) -> Any:
        """The body as the client's ``response.json()`` would read it (``None`` for an empty body)."""
        if self.text is not None:
            return json.loads(self.text) if self.text.strip() else None
        return self.payload


Handler = Callable[[ApiRequest], ApiResponse]


def _error(status: int, message: str, detail: str, exception_type: str) -> ApiResponse:
    return ApiResponse(status, {"Message": message, "ExceptionMessage": detail, "ExceptionType": exception_type})


def body_json_text(raw: str) -> str | None:
    """The request body as the JSON text of the value it carries.

    The SDK client double-encodes (a JSON string holding JSON); plain HTTP callers send the JSON
    itself. Both end up as the same JSON text.
    """
    if not raw.strip():
        return None
    parsed = json.loads(raw)
    if isinstance(parsed, str):
        return value_text(parsed)
    return json.dumps(parsed)


def value_text(encoded: str) -> str:
    """The JSON text of a value the SDK client encoded before sending it (as the body's string):
    the text itself when it is JSON, else the JSON of that string. The in-process transport passes
    the SDK's text here directly, sparing the second encoding and its parse."""
    return encoded if is_json(encoded) else json.dumps(encoded)


def _flag(request: ApiRequest, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() == "true"


def _time(request: ApiRequest, name: str) -> str | None:
    value = request.query.get(name)
    return format_timestamp(parse_timestamp(value)) if value else None


def _statuses(request: ApiRequest) -> list[str] | None:
    value = request.query.get("runtimeStatus")
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


class DurableApi:
    """The API's handlers over one engine, and the table of routes both transports use."""

    def __init__(self, engine: Engine, base_url: Callable[[], str]) -> None:
        self.engine = engine
        self.base_url = base_url
        #: (method, path pattern under a prefix with ``{name}`` segments, handler)
        self.routes: list[tuple[str, str, Handler]] = [
            ("POST", "/orchestrators/{name}", self.start),
            ("POST", "/orchestrators/{name}/{instance_id}", self.start),
            ("GET", "/instances", self.query),
            ("GET", "/instances/", self.query),
            ("DELETE", "/instances", self.purge_by),
            ("DELETE", "/instances/", self.purge_by),
            ("GET", "/instances/{instance_id}", self.get_status),
            ("DELETE", "/instances/{instance_id}", self.purge),
            ("POST", "/instances/{instance_id}/raiseEvent/{event}", self.raise_event),
            ("POST", "/instances/{instance_id}/{operation}", self.operate),
            ("GET", "/entities/{name}/{key}", self.read_entity),
            ("POST", "/entities/{name}/{key}", self.signal_entity),
        ]
        self._compiled = [(method, re.compile(_regex(pattern)), handler)
                          for prefix in PREFIXES for method, pattern, handler in
                          ((m, prefix + p, h) for m, p, h in self.routes)]

    def resolve(self, method: str, raw_path: str) -> tuple[Handler, dict[str, str]] | None:
        """The handler and the (decoded) path parameters for ``raw_path``, as aiohttp's router matches them."""
        for route_method, pattern, handler in self._compiled:
            if route_method != method:
                continue
            found = pattern.fullmatch(raw_path)
            if found is not None:
                return handler, {k: unquote(v) for k, v in found.groupdict().items()}
        return None

    # handlers ------------------------------------------------------------------------------------
    def start(self, request: ApiRequest) -> ApiResponse:
        name = request.match["name"]
        instance_id = request.match.get("instance_id") or None
        try:
            input_ = request.json_text()
        except json.JSONDecodeError as error:
            return _error(400, "Invalid JSON content", str(error), "Newtonsoft.Json.JsonReaderException")
        try:
            instance_id = self.engine.start_instance(name, instance_id, input_)
        except OrchestratorNotFound as error:
            return _error(400, "One or more of the arguments submitted is incorrect", str(error), "System.ArgumentException")
        except InstanceExists as error:
            return _error(500, "Something went wrong while processing your request", str(error), "System.InvalidOperationException")
        payload = management_urls(self.base_url(), instance_id)
        return ApiResponse(202, payload, headers={"Location": payload["statusQueryGetUri"], "Retry-After": "10"})

    def get_status(self, request: ApiRequest) -> ApiResponse:
        status = self.engine.status(request.match["instance_id"], show_input=_flag(request, "showInput", True),
                                    show_history=_flag(request, "showHistory", False))
        if status is None:
            return ApiResponse(404)
        runtime = status["runtimeStatus"]
        headers: dict[str, str] = {}
        if runtime in ("Running", "Pending", "ContinuedAsNew", "Suspended"):
            code = 202
            headers = {"Location": request.url, "Retry-After": "5"}
        elif runtime == "Failed":
            code = 500 if _flag(request, "returnInternalServerErrorOnFailure", False) else 200
        else:
            code = 200
        return ApiResponse(code, status, headers=headers)

    def query(self, request: ApiRequest) -> ApiResponse:
        found = self.engine.query(created_from=_time(request, "createdTimeFrom"),
                                  created_to=_time(request, "createdTimeTo"), statuses=_statuses(request),
                                  prefix=request.query.get("instanceIdPrefix"),
                                  show_input=_flag(request, "showInput", False))
        return ApiResponse(200, found)

    def purge(self, request: ApiRequest) -> ApiResponse:
        try:
            deleted = self.engine.purge(request.match["instance_id"])
        except PurgeRefused as error:
            return _error(400, "One or more of the arguments submitted is incorrect", str(error), "System.InvalidOperationException")
        if not deleted:
            return ApiResponse(404)
        return ApiResponse(200, {"instancesDeleted": deleted})

    def purge_by(self, request: ApiRequest) -> ApiResponse:
        created_from = _time(request, "createdTimeFrom")
        if created_from is None:
            return ApiResponse(400, "Please provide value for 'createdTimeFrom' parameter.")
        deleted = self.engine.purge_by(created_from, _time(request, "createdTimeTo"), _statuses(request))
        if not deleted:
            return ApiResponse(404)
        return ApiResponse(200, {"instancesDeleted": deleted})

    def raise_event(self, request: ApiRequest) -> ApiResponse:
        if request.content_type != "application/json":
            return _error(400, "Only application/json request content is supported", "", "System.ArgumentException")
        try:
            data = request.json_text()
            self.engine.raise_event(request.match["instance_id"], request.match["event"],
                                    data if data is not None else "null")
        except json.JSONDecodeError as error:
            return _error(400, "Invalid JSON content", str(error), "Newtonsoft.Json.JsonReaderException")
        except InstanceNotFound:
            return ApiResponse(404)
        except InstanceGone:
            return ApiResponse(410)
        return ApiResponse(202)

    def operate(self, request: ApiRequest) -> ApiResponse:
        operation = request.match["operation"].lower()
        if operation not in ("terminate", "suspend", "resume"):
            return _error(501, "Not supported", f"'{operation}' is not supported by the embedded engine", "System.NotSupportedException")
        try:
            self.engine.control(request.match["instance_id"], operation, request.query.get("reason"))
        except InstanceNotFound:
            return ApiResponse(404)
        except InstanceGone:
            return ApiResponse(410)
        return ApiResponse(202)

    def read_entity(self, request: ApiRequest) -> ApiResponse:
        state = self.engine.read_entity(request.match["name"], request.match["key"])
        if state is None:
            return ApiResponse(404)
        return ApiResponse(200, text=state)

    def signal_entity(self, request: ApiRequest) -> ApiResponse:
        operation = request.query.get("op")
        if not operation:
            return _error(400, "One or more of the arguments submitted is incorrect", "the 'op' query parameter is required", "System.ArgumentException")
        try:
            input_ = request.json_text()
        except json.JSONDecodeError as error:
            return _error(400, "Invalid JSON content", str(error), "Newtonsoft.Json.JsonReaderException")
        self.engine.signal_entity(request.match["name"], request.match["key"], operation, input_)
        return ApiResponse(202)


def _regex(pattern: str) -> str:
    """An aiohttp route pattern (``{name}`` = one path segment) as a regex over the raw path."""
    parts = re.split(r"\{(\w+)\}", pattern)
    return "".join(re.escape(part) if i % 2 == 0 else f"(?P<{part}>[^{{}}/]+)" for i, part in enumerate(parts))


def _aiohttp_handler(handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def serve(request: web.Request) -> web.StreamResponse:
        api_request = ApiRequest(request.match_info, request.query, await request.text(), request.content_type,
                                 str(request.url))
        result = handler(api_request)
        if result.text is not None:
            return web.Response(status=result.status, text=result.text, content_type="application/json",
                                headers=result.headers)
        if result.payload is None:
            return web.Response(status=result.status, headers=result.headers)
        return web.json_response(result.payload, status=result.status, headers=result.headers)

    return serve


def add_routes(app: web.Application, api: DurableApi) -> None:
    """Register the Durable HTTP API on ``app`` (both prefixes)."""
    for prefix in PREFIXES:
        for method, pattern, handler in api.routes:
            app.router.add_route(method, prefix + pattern, _aiohttp_handler(handler))
