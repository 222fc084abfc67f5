"""The turn's activities: where the I/O happens (model, tools, storage, bus), outside the replay.

Each takes and returns plain JSON. They get their dependencies from ``services()`` (built from
app settings), so the same code runs on the embedded engine and in Azure.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

import azure.durable_functions as df

from kernel import namespaces as ns
from kernel.config.models import OFFLINE_ENDPOINT, SETTINGS_ENDPOINT, AgentConfig
from kernel.governance.policy import EffectivePolicy, Refusal, turn_limit
from kernel.governance.policy_guard import REFUSED, refused_result
from kernel.governance.quota import admit_agents
from kernel.inference.port import ChatMessage, ChatRequest, InferenceError, ToolCall, ToolSpec, tool_name
from kernel.messages import Envelope
from kernel.governance.redaction import redact
from kernel.ports import OutboundMessage
from kernel.toolbus import ANSWER_MARGIN_SECONDS, ToolRequest, tool_call_id
from kernel.topology import AGENT_EVENTS, AGENT_OUTPUTS, MCP_REQUESTS
from realm_of_agents import purpose
from realm_of_agents.agent_state import context_view
from realm_of_agents.decisions import audit_decision
from realm_of_agents.entity import ENTITY_NAME
from realm_of_agents.services import services
from realm_of_agents.tracing import run_traced
from realm_of_agents.turn import ARCHIVE, ASSESS, CONTEXT_SERVER, GRANT_EVENT, MODEL, PUBLISH

log = logging.getLogger("aos.realm.turn")
_context_specs: list[ToolSpec] = []


async def assess(request: dict[str, Any]) -> dict[str, Any]:
    """Purpose alignment: the model's judgement when the agent's endpoint reaches a model, else lexical (labelled)."""
    agent = AgentConfig.model_validate(request["config"])
    event = request["event"]
    router = await services().inference()
    fallback = ""
    if router.uses_model(agent.model.endpoint):
        adapter = (agent.model.adapter.name, agent.model.adapter.version) if agent.model.adapter else None
        refusal = await _refused(router, request["agent_id"], agent.model.endpoint, adapter, request.get("turn_id"),
                                 "purpose")
        if refusal is not None:  # refused before calling: the turn ends with it
            return {"aligned": False, "score": 0.0, "reason": refusal.reason, "method": "policy",
                    "matched_terms": [], "out_of_scope": None, "refused": refusal.to_dict()}
        try:
            judged = await _model_alignment(router, request["agent_id"], agent, event)
        except InferenceError as error:  # the turn's own model call will meet the same endpoint
            log.warning("agent %s: purpose check by model failed (%s); using lexical", request["agent_id"], error)
            judged, fallback = None, f" (the model could not judge: {error})"
        else:
            fallback = " (the model's answer was not the JSON asked for)"
        if judged is not None:
            return judged
    lexical = purpose.assess(agent, event["type"], event.get("data")).to_dict()
    lexical["reason"] += fallback
    return lexical


#: The purpose check's answer, asked for as structured output where the endpoint supports it.
ALIGNMENT_FORMAT = {"type": "json_schema", "json_schema": {"name": "purpose_alignment", "strict": True, "schema": {
    "type": "object", "additionalProperties": False, "required": ["aligned", "reason"],
    "properties": {"aligned": {"type": "boolean"}, "reason": {"type": "string"}}}}}


async def _model_alignment(router: Any, agent_id: str, agent: AgentConfig,
                           event: dict[str, Any]) -> dict[str, Any] | None:
    question = (
        f"Agent purpose: {agent.purpose}\nIn scope: {'; '.join(agent.scope.in_scope) or '-'}\n"
        f"Out of scope: {'; '.join(agent.scope.out_of_scope) or '-'}\n"
        f"Event type: {event['type']}\nEvent data: {json.dumps(event.get('data'))[:4000]}\n"
        'Does this event belong to the agent\'s purpose? Answer only JSON: {"aligned": true|false, "reason": "..."}'
    )
    completion = await router.complete(ChatRequest(
        agent_id, [ChatMessage("user", question)], endpoint=agent.model.endpoint,
        adapter=agent.model.adapter.name if agent.model.adapter else None, temperature=0.0, max_tokens=200,
        response_format=ALIGNMENT_FORMAT))
    text = completion.content
    try:
        answer = json.loads(text[text.index("{"): text.rindex("}") + 1])
        aligned, reason = bool(answer["aligned"]), str(answer["reason"])
    except (ValueError, KeyError, TypeError):
        log.warning("agent %s: the model's alignment answer was not the JSON asked for; using lexical", agent_id)
        return None
    return {"aligned": aligned, "score": 1.0 if aligned else 0.0, "reason": reason, "method": "model",
            "matched_terms": [], "out_of_scope": None, "model": _route(completion)}


def _route(completion: Any) -> dict[str, Any]:
    """Where an answer came from: endpoint, model, adapter, fallback, cache."""
    return {"provider": completion.provider, "endpoint": completion.endpoint, "model": completion.model,
            "adapter": completion.adapter, "fallback": completion.fallback, "cached": completion.cached}


async def model_call(request: dict[str, Any]) -> dict[str, Any]:
    """One model call offering the agent's context tools plus the MCP tools the gateway listed for it.

    It goes to the agent's endpoint with its adapter (``kernel.inference.router``); the completion
    comes back with where it came from: ``endpoint``, ``adapter``, ``fallback`` (the base model
    answered, and why), ``cached``, ``attempts`` and ``note`` (why the offline provider answered)."""
    agent_id = request["agent_id"]
    settings = request.get("model") or {}
    listing = request.get("tools") or {"tools": [], "unavailable": {}}
    specs = await _context_tool_specs(agent_id) + [_tool_spec(t) for t in listing.get("tools") or []]
    adapter = settings.get("adapter") or None
    chat = ChatRequest(
        agent_id=agent_id,
        messages=[_message(m) for m in request["messages"]],
        tools=specs,
        endpoint=settings.get("endpoint") or None,
        adapter=adapter["name"] if adapter else None,
        temperature=float(settings.get("temperature", 0.2)),
        max_tokens=int(settings.get("max_tokens", 1024)),
    )
    router = await services().inference()
    refusal = await _refused(router, agent_id, chat.endpoint,
                             (adapter["name"], str(adapter.get("version") or "latest")) if adapter else None,
                             request.get("turn_id"), "turn")
    if refusal is not None:  # not called: the turn records the refusal and ends
        return {"refused": refusal.to_dict()}
    completion = (await router.complete(chat)).to_dict()
    completion["offered_tools"] = [spec.name for spec in specs]
    completion["unavailable_servers"] = listing.get("unavailable") or {}
    return completion


async def _refused(router: Any, agent_id: str, endpoint_id: str | None, adapter: tuple[str, str] | None,
                   turn_id: str | None, call: str) -> Refusal | None:
    """The policy refusal of a model call about to go where ``endpoint_id`` routes (audited), or ``None``."""
    return await services().policy.check_model_call(agent_id, endpoint=_destination(router, endpoint_id),
                                                     adapter=adapter, turn_id=turn_id, call=call)


def _destination(router: Any, endpoint_id: str | None) -> str:
    """Where a call naming ``endpoint_id`` goes, as policies name it: the endpoint's id, ``default``
    for the app settings' endpoint, ``offline`` when the offline provider answers."""
    try:
        spec, _ = router.endpoint(endpoint_id)
    except (InferenceError, ValueError):  # the call itself will say what is wrong
        return endpoint_id or SETTINGS_ENDPOINT
    return spec.id if spec is not None else OFFLINE_ENDPOINT


def _tool_spec(tool: dict[str, Any]) -> ToolSpec:
    return ToolSpec(tool_name(tool["server"], tool["name"]), tool.get("description") or "",
                    tool.get("input_schema") or {"type": "object"})


async def _context_tool_specs(agent_id: str) -> list[ToolSpec]:
    """The context server's tools as the model is offered them: the same for every agent and call,
    so listed once through the protocol and built once."""
    if not _context_specs:
        from realm_of_agents.context_server import SnapshotBackend, list_context_tools  # the mcp SDK: on first use

        listing_backend = SnapshotBackend({}, services().archive)
        built = [_tool_spec({"server": CONTEXT_SERVER, **t}) for t in await list_context_tools(agent_id, listing_backend)]
        if not _context_specs:  # concurrent first calls all listed them: one keeps the list
            _context_specs.extend(built)
    return list(_context_specs)


async def tool_call(request: dict[str, Any]) -> dict[str, Any]:
    """A call of the agent's own context server (in this app; MCP servers go through the gateway)."""
    agent_id, tool = request["agent_id"], request["tool"]
    turn_id = request.get("turn_id")
    call_id = tool_call_id(turn_id, request["index"]) if turn_id is not None and "index" in request else None
    refusal = await services().policy.admit_tool_call(agent_id, server=CONTEXT_SERVER, tool=tool, turn_id=turn_id,
                                                      call_id=call_id)
    if refusal is not None:  # not run: the model reads why and goes on
        return refused_result(refusal)
    from realm_of_agents.context_server import SnapshotBackend, call_context_tool  # the mcp SDK: on first use

    backend = SnapshotBackend(request.get("state") or {}, services().archive)
    return await call_context_tool(agent_id, backend, tool, request.get("arguments") or {})


async def tool_request(request: dict[str, Any]) -> dict[str, Any]:
    """Send a request to the MCP gateway; returns how long the turn should wait for the answer.

    The message id is the call id, and the gateway keeps one result per call id, so sending
    again (this activity retried) never runs a tool twice."""
    tool_request = ToolRequest.model_validate(request["request"])
    realm = services()
    configs = realm.configs.current()
    if tool_request.op == "list_tools":
        agent = configs.agents.get(tool_request.agent_id)
        found = (configs.mcp_servers.get(ns.resolve(agent.namespace, g.server)) for g in (agent.tools if agent else []))
        own = max((s.timeouts.startup_seconds for s in found if s is not None), default=0.0)
    else:
        server = configs.mcp_servers.get(ns.resolve(ns.namespace_of(tool_request.agent_id), tool_request.server or ""))
        own = server.timeouts.call_seconds if server else 0.0
    envelope = tool_request.envelope(traceparent=request.get("traceparent"))
    await realm.adapters.sender.send(MCP_REQUESTS, [OutboundMessage.from_envelope(envelope)])
    return {"wait_seconds": int(own + ANSWER_MARGIN_SECONDS)}


async def approval_requested(request: dict[str, Any]) -> None:
    """Record a tool call waiting for a human decision, and audit it."""
    realm = services()
    await realm.approvals.request(
        approval=request["approval_id"], agent_id=request["agent_id"], turn_id=request["turn_id"],
        server=request["server"], tool=request["tool"], arguments=redact(request.get("arguments") or {}),
        deadline=datetime.fromisoformat(request["deadline"]), event_type=request["event_type"])
    await realm.audit.append(request["agent_id"], "approval.requested", actor=request["agent_id"], data={
        "approval_id": request["approval_id"], "turn_id": request["turn_id"], "server": request["server"],
        "tool": request["tool"], "arguments": redact(request.get("arguments") or {}), "deadline": request["deadline"]},
        subject=f"{request['server']}.{request['tool']}")


async def approval_decided(request: dict[str, Any]) -> None:
    """Record the decision the turn took (a human's answer, or the deadline's decline), and audit it."""
    realm = services()
    decision = request["decision"]
    await realm.approvals.decided(request["approval_id"], decision)
    await realm.audit.append(request["agent_id"], "approval.decided", actor=str(decision.get("by") or "unknown"),
                             data={"approval_id": request["approval_id"], **decision},
                             subject=f"{request['server']}.{request['tool']}")


async def archive(record: dict[str, Any]) -> None:
    """Keep the turn in full, then its decision on the agent's audit chain (both idempotent: retried as one)."""
    realm = services()
    again = await realm.archive.save(record)
    await audit_decision(realm.audit, record, retry=again)


async def publish(request: dict[str, Any]) -> int:
    """Send the turn's outputs on the outputs topic (message ids fixed by the turn: resends are duplicates)."""
    messages = [OutboundMessage.from_envelope(Envelope.model_validate(o)) for o in request["outputs"]]
    await services().adapters.sender.send(AGENT_OUTPUTS, messages)
    return len(messages)


async def conclude(record: dict[str, Any]) -> dict[str, Any]:
    """Archive the turn, then publish its outputs (``record["outputs"]``): the two steps that end
    every turn, in one activity, each in its own span as when they run apart. It never raises for
    them: it says what was done (``archived``, ``published``) and why a step failed, and the turn
    retries that step on its own (``ARCHIVE``, ``PUBLISH``). Nothing is published before the archive
    succeeded, as when the turn runs them one after the other."""
    done: dict[str, Any] = {"archived": False, "published": None}
    try:
        await run_traced(ARCHIVE, archive, record)
    except Exception as error:  # the turn retries the archive, then publishes
        log.warning("turn %s: archive failed (%s); the turn retries it", record.get("turn_id"), type(error).__name__)
        done["archive_error"] = f"{type(error).__name__}: {error}"
        return done
    done["archived"] = True
    outputs = record.get("outputs") or []
    if outputs:
        try:
            done["published"] = await run_traced(PUBLISH, publish, {"outputs": outputs})
        except Exception as error:
            log.warning("turn %s: publish failed (%s); the turn retries it", record.get("turn_id"), type(error).__name__)
            done["publish_error"] = f"{type(error).__name__}: {error}"
    return done


async def report(request: dict[str, Any]) -> str:
    """Keep an event the agent could not take in the dead-letter store, with the reason."""
    event = request["event"]
    return await services().deadletters.record(
        kind=request["kind"], reason=request["reason"], body=json.dumps(event).encode(),
        source=f"agent-events/{event.get('to') or 'broadcast'}", message_id=event.get("id"))


def _message(data: dict[str, Any]) -> ChatMessage:
    calls = [ToolCall(c["id"], c["name"], dict(c.get("arguments") or {})) for c in data.get("tool_calls") or []]
    return ChatMessage(data["role"], data.get("content") or "", calls, data.get("tool_call_id"))


async def declared_config(request: dict[str, Any]) -> dict[str, Any] | None:
    """The agent's config and version as declared now (``None`` when it is not declared)."""
    realm = services()
    configs = await realm.current_configs()
    agent = configs.agents.get(request["agent_id"])
    if agent is None:
        return None
    namespace = configs.namespaces.get(ns.namespace_of(request["agent_id"]))
    if namespace is not None and namespace.quotas.agents is not None:  # the sync may not have admitted it yet
        from realm_of_agents.registration import registered

        rows = await registered(realm.adapters.tables)
        if request["agent_id"] in admit_agents(configs, (k for k, r in rows.items() if r.get("status") == "active")).refused:
            return None
    return {"config": agent.model_dump(mode="json", by_alias=True, exclude_none=True),
            "version": configs.source("agent", request["agent_id"]).version}


async def send_event(request: dict[str, Any]) -> None:
    """Send an envelope to the agent-events topic (scheduled wake-ups)."""
    envelope = Envelope.model_validate(request["envelope"])
    await services().adapters.sender.send(AGENT_EVENTS, [OutboundMessage.from_envelope(envelope)])


async def summarize(request: dict[str, Any]) -> str | None:
    """One summary line, written by the model, for a turn leaving the agent's recent window."""
    settings = request.get("model") or {}
    router = await services().inference()
    if not router.uses_model(settings.get("endpoint") or None):
        return None
    adapter = settings.get("adapter") or None
    refusal = await _refused(router, request["agent_id"], settings.get("endpoint") or None,
                             (adapter["name"], str(adapter.get("version") or "latest")) if adapter else None,
                             request.get("turn_id"), "summary")
    if refusal is not None:  # the extractive summary line stays
        return None
    turn = request["turn"]
    earlier = "\n".join(request.get("summary") or []) or "(none)"
    prompt = (f"Earlier summary lines:\n{earlier}\n\nTurn at {turn['time'][:16]}: event {turn['event_type']}, "
              f"outcome {turn['outcome']}: {turn['text']}\n\nWrite ONE line (at most 25 words) that keeps what "
              "matters from this turn for the future. Answer with the line only.")
    completion = await router.complete(ChatRequest(request["agent_id"], [ChatMessage("user", prompt)],
                                                   endpoint=settings.get("endpoint") or None,
                                                   adapter=adapter["name"] if adapter else None, temperature=0.0,
                                                   max_tokens=80))
    line = " ".join(completion.content.split())
    return f"{turn['time'][:16]} {turn['event_type']} ({turn['outcome']}): {line}" if line else None


async def policy(request: dict[str, Any]) -> dict[str, Any]:
    """The agent's effective policy now (the turn fetches it once, and again after each quiet-hours wait).
    With ``begin`` (the turn's first read) the turn is also counted against its namespace's
    turns-per-minute quota: ``quota_refused`` holds the (audited) refusal when it is over.

    With ``assess`` (the ``ASSESS`` request, on the first read) it also runs the purpose check, in
    its own span, and returns it as ``alignment``: one activity instead of two back to back. Not
    when the quota refused the turn, nor when the policy has quiet hours (the turn may have to wait
    them out first, and then assesses on its own). With ``first_model`` too (the ``MODEL`` request
    of step 0, sent for agents without MCP tools) and an aligned event, it makes that call and
    returns its completion as ``first_model`` (see ``_first_model_call``)."""
    realm = services()
    await realm.current_configs()
    found = realm.policy.effective(request["agent_id"])
    effective = found.to_dict()
    if request.get("begin"):
        refusal = await realm.policy.admit_turn(request["agent_id"], turn_id=request.get("turn_id"))
        if refusal is not None:
            effective["quota_refused"] = refusal.to_dict()
    if request.get("assess") and "quota_refused" not in effective and not found.quiet_windows:
        alignment = effective["alignment"] = await run_traced(ASSESS, assess, request["assess"])
        first = request.get("first_model")
        if first is not None and alignment.get("aligned") and not alignment.get("refused"):
            effective.update(await _first_model_call(first, found))
    return effective


async def _first_model_call(request: dict[str, Any], found: EffectivePolicy) -> dict[str, Any]:
    """The turn's first model call (``MODEL``'s request, in its own span), made here for an agent
    without MCP tools, whose first prompt is known before the policy is read: one activity and
    one orchestration step fewer per turn. Returns ``first_model`` (the completion), or
    ``first_model_failed`` (the error's type; the message is logged) when the call failed: that was the call's first attempt,
    and the turn makes the rest (``MODEL_RETRY``) as its own activity, which records the outcome.
    Nothing when the policy allows no model call in a turn."""
    allowed, _ = turn_limit(int((request.get("model") or {}).get("max_steps", 6)), found.max_steps_per_turn)
    if allowed < 1:
        return {}
    try:
        return {"first_model": await run_traced(MODEL, model_call, request)}
    except Exception as error:  # noqa: BLE001 - any failure is retried by the turn's own call
        log.warning("agent %s: the first model call, made with the policy read, failed (%s); the turn retries it",
                    request.get("agent_id"), type(error).__name__)
        return {"first_model_failed": type(error).__name__}


async def policy_record(request: dict[str, Any]) -> None:
    """Audit a refusal (or a quiet-hours deferral) the turn itself made: per-turn limits, quiet hours."""
    await services().policy.record(request["agent_id"], Refusal.from_dict(request["refusal"]),
                                   turn_id=request.get("turn_id"), kind=request.get("kind") or REFUSED)


async def grant(request: dict[str, Any], client: Any) -> bool:
    """Raise the grant to a turn; False when the turn has finished (it can never take it). A turn
    that does not exist yet raises, so the orchestration retries: its wake may be mid-way.

    Given the agent and event (``hand_over`` sends them), the grant carries the agent's state as
    the turn would read it, when the entity's committed state has that event as its current one:
    the turn then starts at once instead of asking the entity again (one entity batch and one
    episode fewer per queued turn). Without it (a failed read, another current event, an older
    caller) the turn asks the entity, as before."""
    instance = request["instance_id"]
    payload: dict[str, Any] = {"granted": True}
    if request.get("agent_id") and request.get("event_id"):
        view = await _granted_view(client, request["agent_id"], request["event_id"])
        if view is not None:
            payload.update({"event_id": request["event_id"], "state": view})
    try:  # one call, no status read first: the API answers 410 for a finished turn, 404 for none
        await client.raise_event(instance, GRANT_EVENT, payload)
    except Exception as error:  # the SDK raises a bare Exception, its text naming the status
        if _GONE in str(error):
            return False
        if _NOT_FOUND in str(error):
            raise LookupError(f"turn {instance} does not exist (yet)") from None
        raise
    return True


async def _granted_view(client: Any, agent_id: str, event_id: str) -> dict[str, Any] | None:
    """The agent's state as its turn for ``event_id`` reads it, if that event is the current one."""
    try:
        found = await client.read_entity_state(df.EntityId(ENTITY_NAME, agent_id))
    except Exception as error:  # noqa: BLE001 - the turn reads the state itself instead
        log.info("agent %s: the grant for event %s goes without the state (reading it failed: %s)",
                 agent_id, event_id, type(error).__name__)
        return None
    state = found.entity_state if found.entity_exists else None
    if not isinstance(state, dict) or state.get("current") != event_id:
        return None
    return context_view(state)


#: How the Durable SDK's ``raise_event`` words a 410 (finished) and a 404 (no such instance).
_GONE, _NOT_FOUND = "is gone", "found."
