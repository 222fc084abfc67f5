"""The loopback Durable HTTP API, so the SDK's own ``DurableOrchestrationClient`` works unchanged.

Served under both ``/durabletask/`` (the ``rpcBaseUrl`` the client binding carries) and
``/runtime/webhooks/durabletask/`` (the public webhook paths in ``create_check_status_response``
links). Status codes follow the extension's ``HttpApiHandler``: 202 while running, 200 when done,
404 unknown, 410 gone; starting an id that is still active is a 500 carrying the extension's
"An Orchestration instance with the status ... already exists." message.
"""

from __future__ import annotations

import json
from typing import Callable
from urllib.parse import quote

from aiohttp import web

from .clock import format_timestamp, parse_timestamp
from .engine import Engine, InstanceExists, InstanceGone, InstanceNotFound, OrchestratorNotFound, PurgeRefused

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


def _error(status: int, message: str, detail: str, exception_type: str) -> web.Response:
    return web.json_response({"Message": message, "ExceptionMessage": detail, "ExceptionType": exception_type}, status=status)


async def body_json_text(request: web.Request) -> str | None:
    """The request body as the JSON text of the value it carries.

    The SDK client double-encodes (a JSON string holding JSON); plain HTTP callers send the JSON
    itself. Both end up as the same JSON text.
    """
    raw = await request.text()
    if not raw.strip():
        return None
    parsed = json.loads(raw)
    if isinstance(parsed, str):
        try:
            json.loads(parsed)
            return parsed
        except json.JSONDecodeError:
            return json.dumps(parsed)
    return json.dumps(parsed)


def _flag(request: web.Request, name: str, default: bool) -> bool:
    value = request.query.get(name)
    return default if value is None else value.lower() == "true"


def _time(request: web.Request, name: str) -> str | None:
    value = request.query.get(name)
    return format_timestamp(parse_timestamp(value)) if value else None


def _statuses(request: web.Request) -> list[str] | None:
    value = request.query.get("runtimeStatus")
    return [s.strip() for s in value.split(",") if s.strip()] if value else None


def add_routes(app: web.Application, engine: Engine, base_url: Callable[[], str]) -> None:
    """Register the Durable HTTP API on ``app``."""

    async def start(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        instance_id = request.match_info.get("instance_id") or None
        try:
            input_ = await body_json_text(request)
        except json.JSONDecodeError as error:
            return _error(400, "Invalid JSON content", str(error), "Newtonsoft.Json.JsonReaderException")
        try:
            instance_id = engine.start_instance(name, instance_id, input_)
        except OrchestratorNotFound as error:
            return _error(400, "One or more of the arguments submitted is incorrect", str(error), "System.ArgumentException")
        except InstanceExists as error:
            return _error(500, "Something went wrong while processing your request", str(error), "System.InvalidOperationException")
        payload = management_urls(base_url(), instance_id)
        return web.json_response(payload, status=202, headers={"Location": payload["statusQueryGetUri"], "Retry-After": "10"})

    async def get_status(request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        status = engine.status(instance_id, show_input=_flag(request, "showInput", True),
                               show_history=_flag(request, "showHistory", False))
        if status is None:
            return web.Response(status=404)
        runtime = status["runtimeStatus"]
        headers: dict[str, str] = {}
        if runtime in ("Running", "Pending", "ContinuedAsNew", "Suspended"):
            code = 202
            headers = {"Location": str(request.url), "Retry-After": "5"}
        elif runtime == "Failed":
            code = 500 if _flag(request, "returnInternalServerErrorOnFailure", False) else 200
        else:
            code = 200
        return web.json_response(status, status=code, headers=headers)

    async def query(request: web.Request) -> web.Response:
        found = engine.query(created_from=_time(request, "createdTimeFrom"), created_to=_time(request, "createdTimeTo"),
                             statuses=_statuses(request), prefix=request.query.get("instanceIdPrefix"),
                             show_input=_flag(request, "showInput", False))
        return web.json_response(found)

    async def purge(request: web.Request) -> web.Response:
        try:
            deleted = engine.purge(request.match_info["instance_id"])
        except PurgeRefused as error:
            return _error(400, "One or more of the arguments submitted is incorrect", str(error), "System.InvalidOperationException")
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def purge_by(request: web.Request) -> web.Response:
        created_from = _time(request, "createdTimeFrom")
        if created_from is None:
            return web.json_response("Please provide value for 'createdTimeFrom' parameter.", status=400)
        deleted = engine.purge_by(created_from, _time(request, "createdTimeTo"), _statuses(request))
        if not deleted:
            return web.Response(status=404)
        return web.json_response({"instancesDeleted": deleted})

    async def raise_event(request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        if request.content_type != "application/json":
            return _error(400, "Only application/json request content is supported", "", "System.ArgumentException")
        try:
            data = await body_json_text(request)
            engine.raise_event(instance_id, request.match_info["event"], data if data is not None else "null")
        except json.JSONDecodeError as error:
            return _error(400, "Invalid JSON content", str(error), "Newtonsoft.Json.JsonReaderException")
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceGone:
            return web.Response(status=410)
        return web.Response(status=202)

    async def operate(request: web.Request) -> web.Response:
        instance_id = request.match_info["instance_id"]
        operation = request.match_info["operation"].lower()
        if operation not in ("terminate", "suspend", "resume"):
            return _error(501, "Not supported", f"'{operation}' is not supported by the embedded engine", "System.NotSupportedException")
        try:
            engine.control(instance_id, operation, request.query.get("reason"))
        except InstanceNotFound:
            return web.Response(status=404)
        except InstanceGone:
            return web.Response(status=410)
        return web.Response(status=202)

    async def read_entity(request: web.Request) -> web.Response:
        state = engine.read_entity(request.match_info["name"], request.match_info["key"])
        if state is None:
            return web.Response(status=404)
        return web.Response(text=state, content_type="application/json")

    async def signal_entity(request: web.Request) -> web.Response:
        operation = request.query.get("op")
        if not operation:
            return _error(400, "One or more of the arguments submitted is incorrect", "the 'op' query parameter is required", "System.ArgumentException")
        try:
            input_ = await body_json_text(request)
        except json.JSONDecodeError as error:
            return _error(400, "Invalid JSON content", str(error), "Newtonsoft.Json.JsonReaderException")
        engine.signal_entity(request.match_info["name"], request.match_info["key"], operation, input_)
        return web.Response(status=202)

    for prefix in PREFIXES:
        app.router.add_post(prefix + "/orchestrators/{name}", start)
        app.router.add_post(prefix + "/orchestrators/{name}/{instance_id}", start)
        app.router.add_get(prefix + "/instances", query)
        app.router.add_get(prefix + "/instances/", query)
        app.router.add_delete(prefix + "/instances", purge_by)
        app.router.add_delete(prefix + "/instances/", purge_by)
        app.router.add_get(prefix + "/instances/{instance_id}", get_status)
        app.router.add_delete(prefix + "/instances/{instance_id}", purge)
        app.router.add_post(prefix + "/instances/{instance_id}/raiseEvent/{event}", raise_event)
        app.router.add_post(prefix + "/instances/{instance_id}/{operation}", operate)
        app.router.add_get(prefix + "/entities/{name}/{key}", read_entity)
        app.router.add_post(prefix + "/entities/{name}/{key}", signal_entity)


