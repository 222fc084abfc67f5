"""The agents' HTTP API: list, inspect, send events, pause/resume/retire, memory, turns, sync.

Handlers take the request and the Durable client and answer JSON; every error is a JSON object
``{"error": "..."}`` with a message that names what was wrong. The blueprint binds them to routes.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import datetime, timezone
from typing import Any

import azure.durable_functions as df
import azure.functions as func
from pydantic import ValidationError

from kernel.adapters import redact as redact_text
from kernel.governance.access import acting, sees
from kernel.governance.redaction import redact
from kernel.messages import Envelope, describe_invalid
from kernel.ports import NotFound, OutboundMessage
from kernel.telemetry import stamp
from kernel.topology import AGENT_EVENTS
from realm_of_agents import commands, registration
from realm_of_agents.approvals import ApprovalConflict
from realm_of_agents.approvals import event_name as approval_event_name
from realm_of_agents.entity import ENTITY_NAME
from realm_of_agents.ids import command_instance_id, turn_instance_id
from realm_of_agents.memory import size_of
from realm_of_agents.services import services

COMMAND_WAIT_SECONDS = 15.0
LIST_READ_CONCURRENCY = 32


def respond(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2, default=str), status_code=status, mimetype="application/json")


def error(message: str, status: int) -> func.HttpResponse:
    return respond({"error": message}, status)


def _unknown(agent_id: str) -> func.HttpResponse:
    return error(f"no agent '{agent_id}' is declared in config", 404)


async def _hidden(agent_id: str) -> func.HttpResponse | None:
    """404, as for an agent that does not exist, when the agent is in a namespace the caller may not
    see (``kernel.governance.access.sees``): a 403 would tell them it exists."""
    if sees(agent_id, (await services().current_configs()).namespaces):
        return None
    return _unknown(agent_id)


async def _state(client: df.DurableOrchestrationClient, agent_id: str) -> dict[str, Any] | None:
    response = await client.read_entity_state(df.EntityId(ENTITY_NAME, agent_id))
    return response.entity_state if response.entity_exists else None


def agent_view(agent_id: str, state: dict[str, Any] | None, *, full: bool) -> dict[str, Any]:
    """What the API shows of an agent's state (``full`` adds goals, memory and the queue)."""
    if state is None:
        return {"id": agent_id, "status": "unregistered", "registered": False}
    config = state.get("config") or {}
    view: dict[str, Any] = {
        "id": agent_id, "registered": True, "display_name": config.get("display_name"), "status": state["status"],
        "config_version": state.get("config_version"), "counters": state["counters"],
        "inbox": len(state["inbox"]), "current_event": state.get("current"),
        "active_goals": sum(1 for g in state["goals"] if g.get("status") == "active"),
    }
    if full:
        view.update(purpose=config.get("purpose"), scope=config.get("scope"),
                    success_criteria=config.get("success_criteria"), goals=state["goals"], memory=state["memory"],
                    queued_events=[entry["id"] for entry in state["inbox"][:50]], state_bytes=size_of(state),
                    memory_budget=config.get("memory"))
    return view


async def list_agents(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    realm = services()
    configs = await realm.current_configs()
    registry = await registration.registered(realm.adapters.tables)
    ids = sorted(a for a in set(configs.agents) | set(registry) if sees(a, configs.namespaces))
    limit = asyncio.Semaphore(LIST_READ_CONCURRENCY)

    async def one(agent_id: str) -> dict[str, Any]:
        async with limit:
            view = agent_view(agent_id, await _state(client, agent_id), full=False)
        agent = configs.agents.get(agent_id)
        view["declared"] = agent is not None
        view["enabled"] = agent.enabled if agent is not None else False
        if agent is not None:
            view["display_name"] = agent.display_name
            view["source"] = configs.source("agent", agent_id).file
        return view

    return respond({"agents": list(await asyncio.gather(*(one(agent_id) for agent_id in ids)))})


async def get_agent(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    agent_id = req.route_params["agent_id"]
    if (hidden := await _hidden(agent_id)) is not None:
        return hidden
    state = await _state(client, agent_id)
    if state is None and services().agent(agent_id) is None:
        return _unknown(agent_id)
    return respond(agent_view(agent_id, state, full=True))


async def send_event(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    agent_id = req.route_params["agent_id"]
    if (hidden := await _hidden(agent_id)) is not None:
        return hidden
    realm = services()
    if (await realm.current_configs()).agents.get(agent_id) is None:
        return _unknown(agent_id)
    body = _json_body(req)
    if isinstance(body, func.HttpResponse):
        return body
    if not isinstance(body, dict) or "type" not in body:
        return error('send a JSON object with at least "type", e.g. {"type": "invoice.received", "data": {...}}', 400)
    fields = {k: body[k] for k in ("id", "type", "source", "subject", "correlation_id", "reply_to", "traceparent", "data") if k in body}
    fields.setdefault("id", uuid.uuid4().hex)
    fields.setdefault("source", "api")
    unknown = sorted(set(body) - set(fields) - {"to"})
    if unknown:
        return error(f"unknown field(s) {', '.join(unknown)}: an event has id, type, source, subject, "
                     "correlation_id, reply_to, traceparent and data", 400)
    try:
        envelope = Envelope(to=agent_id, **fields)
    except ValidationError as invalid:
        return error(f"invalid event: {describe_invalid(invalid)}", 400)
    envelope = stamp(envelope)  # the HTTP request's span: the agent's wake is its child
    await realm.adapters.sender.send(AGENT_EVENTS, [OutboundMessage.from_envelope(envelope)])
    turn_id = turn_instance_id(agent_id, envelope.id)
    return respond({"event_id": envelope.id, "agent_id": agent_id, "turn_id": turn_id,
                    "turn_url": f"/api/agents/{agent_id}/turns/{turn_id}"}, 202)


async def command(req: func.HttpRequest, client: df.DurableOrchestrationClient, operation: str,
                  payload: dict[str, Any] | None = None) -> func.HttpResponse:
    agent_id = req.route_params["agent_id"]
    if (hidden := await _hidden(agent_id)) is not None:
        return hidden
    if services().agent(agent_id) is None and await _state(client, agent_id) is None:
        return _unknown(agent_id)
    instance = command_instance_id(agent_id, operation, uuid.uuid4().hex)
    actor = acting()
    try:  # no admin action goes unaudited: the record first, the action only if it was written
        await services().audit.append(agent_id, f"admin.{operation}", actor=actor, subject=agent_id,
                                      data={"command": instance, "payload": redact(payload or {})})
    except Exception as failure:  # noqa: BLE001
        return error(f"{operation} not done: the audit log could not record it "
                     f"({type(failure).__name__}: {redact_text(str(failure))[:200]})", 503)
    await client.start_new(commands.ORCHESTRATOR, instance,
                           {"agent_id": agent_id, "operation": operation, "payload": payload or {"by": actor}})
    status = await _await_instance(client, instance, COMMAND_WAIT_SECONDS)
    if status is None:
        return respond({"accepted": True, "command": instance, "note": "still running"}, 202)
    if status.runtime_status.value != "Completed":
        return error(f"{operation} failed: {str(status.output).splitlines()[0] if status.output else status.runtime_status.value}", 409)
    return respond({"id": agent_id, "operation": operation, **(status.output or {}).get("result", {})})


async def remember(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = _json_body(req)
    if isinstance(body, func.HttpResponse):
        return body
    if not isinstance(body, dict) or not isinstance(body.get("fact"), str) or not body["fact"].strip():
        return error('send {"fact": "<text>"}', 400)
    return await command(req, client, "remember", {"fact": body["fact"]})


async def update_goal(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    body = _json_body(req)
    if isinstance(body, func.HttpResponse):
        return body
    if not isinstance(body, dict) or body.get("action") not in ("add", "progress", "complete", "abandon"):
        return error('send {"action": "add"|"progress"|"complete"|"abandon", "progress": 0-100, "note": "..."}', 400)
    return await command(req, client, "update_goal", {"goal_id": req.route_params["goal_id"], "change": body})


async def search_memory(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    agent_id = req.route_params["agent_id"]
    if (hidden := await _hidden(agent_id)) is not None:
        return hidden
    query = (req.params.get("q") or "").strip()
    if not query:
        return error("give the words to search for: ?q=...", 400)
    try:
        limit = max(1, min(50, int(req.params.get("limit", "10"))))
    except ValueError:
        return error("limit must be a whole number", 400)
    state = await _state(client, agent_id)
    if state is None and services().agent(agent_id) is None:
        return _unknown(agent_id)
    try:
        archived = await services().archive.search(agent_id, query, limit=limit)
    except ValueError as bad:
        return error(str(bad), 400)
    from realm_of_agents.context_server import hot_memory_matches  # imports the mcp SDK: on first use

    hot = hot_memory_matches(state, query, limit) if state else []
    return respond({"agent_id": agent_id, "query": query, "results": archived, "hot_memory": hot})


async def recent_turns(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    agent_id = req.route_params["agent_id"]
    if (hidden := await _hidden(agent_id)) is not None:
        return hidden
    try:
        limit = max(1, min(200, int(req.params.get("limit", "20"))))
    except ValueError:
        return error("limit must be a whole number", 400)
    return respond({"agent_id": agent_id, "turns": await services().archive.recent(agent_id, limit)})


async def get_turn(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    agent_id, turn_id = req.route_params["agent_id"], req.route_params["turn_id"]
    if (hidden := await _hidden(agent_id)) is not None:
        return hidden
    try:
        return respond(await services().archive.get(agent_id, turn_id))
    except ValueError as bad:
        return error(str(bad), 400)
    except NotFound:
        pass
    status = await client.get_status(turn_id)
    if status is None or status.runtime_status is None:
        return error(f"agent '{agent_id}' has no turn '{turn_id}'", 404)
    custom = status.custom_status if isinstance(status.custom_status, dict) else {}
    return respond({"agent_id": agent_id, "turn_id": turn_id, "status": status.runtime_status.value,
                    "phase": custom.get("phase"), "position": custom.get("position"),
                    **{key: custom[key] for key in ("approval_id", "tool", "deadline", "until", "policies")
                       if key in custom},
                    "result": status.output if status.runtime_status.value == "Completed" else None}, 200)


async def sync_agents(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    realm = services()
    report = await registration.sync(client, await realm.current_configs(refresh=True), realm.adapters.tables,
                                     actor=acting())
    return respond(report.to_dict())


async def list_deadletters(req: func.HttpRequest) -> func.HttpResponse:
    try:
        limit = max(1, min(500, int(req.params.get("limit", "50"))))
    except ValueError:
        return error("limit must be a whole number", 400)
    return respond({"deadletters": await services().deadletters.list(limit)})


async def get_deadletter(req: func.HttpRequest) -> func.HttpResponse:
    try:
        return respond(await services().deadletters.get(req.route_params["record_id"]))
    except NotFound as missing:
        return error(str(missing), 404)


def _json_body(req: func.HttpRequest) -> Any:
    raw = req.get_body()
    if not raw:
        return error("the request needs a JSON body", 400)
    try:
        return json.loads(raw)
    except json.JSONDecodeError as bad:
        return error(f"the body is not valid JSON: {bad}", 400)


async def _await_instance(client: df.DurableOrchestrationClient, instance: str, timeout: float) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.01
    while True:
        status = await client.get_status(instance)
        if status is not None and status.runtime_status is not None and status.runtime_status.value in (
                "Completed", "Failed", "Terminated"):
            return status
        if asyncio.get_running_loop().time() > deadline:
            return None
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.25)


async def list_approvals(req: func.HttpRequest) -> func.HttpResponse:
    return respond({"approvals": await services().approvals.pending()})


async def get_approval(req: func.HttpRequest) -> func.HttpResponse:
    try:
        return respond(await services().approvals.get(req.route_params["approval_id"]))
    except NotFound as missing:
        return error(str(missing), 404)


async def answer_approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Record the answer once (a second answer, or one after the deadline, is refused), then tell the turn."""
    approval = req.route_params["approval_id"]
    try:
        body = req.get_json()
    except ValueError:
        return error('the body is not valid JSON: expected {"approve": true|false, "by": "...", "reason": "..."}', 400)
    if not isinstance(body, dict) or not isinstance(body.get("approve"), bool):
        return error("'approve' must be true or false", 400)
    by, reason = body.get("by") or "api", body.get("reason")
    if not isinstance(by, str) or (reason is not None and not isinstance(reason, str)):
        return error("'by' and 'reason' must be strings", 400)
    actor = acting()
    if actor.startswith("user:"):  # a signed-in caller is who they proved to be, whatever the body says
        by = actor
    try:
        answered = await services().approvals.answer(approval, approved=body["approve"], by=by, reason=reason,
                                                     now=datetime.now(timezone.utc))
    except NotFound as missing:
        return error(str(missing), 404)
    except ApprovalConflict as conflict:
        return error(str(conflict), 409)
    await client.raise_event(answered["turn_id"], approval_event_name(approval), answered["decision"])
    return respond(answered, 202)
