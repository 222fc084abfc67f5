"""The workflows' HTTP API: declared workflows, starting runs, a run step by step, cancel, answers.

Handlers take the request and the kernel's Durable client and answer JSON; every error is
``{"error": "..."}`` naming what was wrong (400 bad body or input, 404 unknown workflow or run,
409 a run or step not in a state that takes the request).

Namespaces: with Entra ID tokens a caller sees only the workflows, and the runs of workflows, of
the namespaces it may see (``kernel.governance.access.sees``), like the agent routes; anything else
answers 404 word for word as when it does not exist, so a 403 never tells that it does.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import azure.durable_functions as df
import azure.functions as func

from kernel import namespaces as ns
from kernel import runtime
from kernel.config.drop import current_configs
from kernel.governance.access import acting, allowed_namespaces, sees
from kernel.workflows import ids, schedules
from kernel.workflows.runs import (
    DisabledWorkflow,
    InvalidInput,
    RunIndex,
    UnknownWorkflow,
    start,
)

MAX_LIST = 500


def respond(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2, default=str), status_code=status, mimetype="application/json")


def error(message: str, status: int) -> func.HttpResponse:
    return respond({"error": message}, status)


def _body(req: func.HttpRequest) -> dict[str, Any]:
    raw = req.get_body()
    if not raw:
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as problem:
        raise ValueError(f"the body is not valid JSON: {problem}") from None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")  # noqa: TRY004 - a bad body, answered 400
    return body


async def list_workflows(req: func.HttpRequest) -> func.HttpResponse:
    configs = await current_configs()
    workflows = []
    for address, workflow in sorted(configs.workflows.items()):
        if not sees(address, configs.namespaces):
            continue
        source = configs.source("workflow", address)
        workflows.append({
            "id": address, "description": workflow.description, "enabled": workflow.enabled,
            "version": source.version, "source": f"{source.file}:{source.line}",
            "trigger": workflow.trigger.model_dump(mode="json", exclude_none=True) if workflow.trigger else None,
            "inputs": workflow.inputs,
            "steps": [{"id": step.id, "kind": step.kind, "needs": step.needs,
                       "target": step.agent or step.tool or (step.wait.event if step.wait else None)}
                      for step in workflow.steps]})
    return respond({"workflows": workflows})


async def start_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    address = req.route_params["workflow_id"]
    try:
        body = _body(req)
    except ValueError as problem:
        return error(str(problem), 400)
    unknown = set(body) - {"input"}
    if unknown:
        return error(f"unknown field(s) {', '.join(sorted(unknown))}: the body is {{\"input\": {{...}}}}", 400)
    configs = await current_configs()
    if not sees(address, configs.namespaces):
        return error(f"no workflow '{address}' is declared in config", 404)
    run_id = ids.run_id(address, uuid.uuid4().hex[:12])
    try:
        await start(client, RunIndex(runtime.adapters().tables), configs, address,
                    body.get("input", {}), run_id=run_id, trigger={"kind": "api", "by": acting()})
    except UnknownWorkflow as problem:
        return error(str(problem), 404)
    except DisabledWorkflow as problem:
        return error(str(problem), 409)
    except InvalidInput as problem:
        return error(f"the input does not fit workflow '{address}': {problem}", 400)
    return respond({"run_id": run_id, "workflow": address, "status_url": f"/api/workflows/runs/{run_id}"}, 202)


async def list_runs(req: func.HttpRequest) -> func.HttpResponse:
    try:
        limit = max(1, min(int(req.params.get("limit", "50")), MAX_LIST))
    except ValueError:
        return error("limit must be a whole number", 400)
    allowed = allowed_namespaces((await current_configs()).namespaces)  # None: every namespace
    workflow = req.params.get("workflow") or None
    if workflow is not None and not ns.visible(allowed, workflow):
        return respond({"runs": []})
    rows = await RunIndex(runtime.adapters().tables).recent(
        limit=limit, workflow=workflow,
        keep=None if allowed is None else lambda row: ns.visible(allowed, str(row.get("workflow") or "")))
    return respond({"runs": rows})


async def run_view(client: df.DurableOrchestrationClient, run_id: str) -> dict[str, Any] | None:
    """The run as its orchestration knows it: the full view once finished, its progress before."""
    if not ids.is_run(run_id):
        return None
    status = await client.get_status(run_id)
    runtime_status = getattr(getattr(status, "runtime_status", None), "value", None)
    if runtime_status is None:
        return None
    workflow = _workflow_of(status) or _workflow_of(await client.get_status(run_id, show_input=True))
    if workflow is None or not sees(workflow, (await current_configs()).namespaces):
        return None  # a run of a namespace the caller may not see is answered like one that does not exist
    view = status.output if runtime_status == "Completed" and isinstance(status.output, dict) else None
    if view is None:
        custom = status.custom_status
        view = custom if isinstance(custom, dict) else {"run_id": run_id, "status": "pending", "steps": []}
    if runtime_status == "Failed":
        view = {**view, "status": "error", "error": f"the run's orchestration failed: {status.output}"}
    elif runtime_status == "Terminated":
        view = {**view, "status": "terminated"}
    return {**view, "runtime_status": runtime_status}


def _workflow_of(status: Any) -> str | None:
    """The workflow (address) of a run: from its progress, or from its input before it published any."""
    for value, key in ((getattr(status, "custom_status", None), "workflow"), (getattr(status, "output", None), "workflow"),
                       (getattr(status, "input_", None), "address")):
        if isinstance(value, dict) and isinstance(value.get(key), str):
            return value[key]
    return None


async def get_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    run_id = req.route_params["run_id"]
    view = await run_view(client, run_id)
    if view is None:
        return error(f"no workflow run '{run_id}'", 404)
    return respond(view)


async def _running(req: func.HttpRequest, client: df.DurableOrchestrationClient
                   ) -> tuple[str, dict[str, Any], dict[str, Any]] | func.HttpResponse:
    """The run id, request body and view of a run that can still take an event, or the error answer
    (400 for a bad body, 404 for an unknown run, 409 for a finished one)."""
    run_id = req.route_params["run_id"]
    try:
        body = _body(req)
    except ValueError as problem:
        return error(str(problem), 400)
    view = await run_view(client, run_id)
    if view is None:
        return error(f"no workflow run '{run_id}'", 404)
    if view.get("runtime_status") not in ("Running", "Pending"):
        return error(f"run '{run_id}' has finished ({view.get('status')})", 409)
    return run_id, body, view


async def cancel_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    target = await _running(req, client)
    if isinstance(target, func.HttpResponse):
        return target
    run_id, body, _view = target
    await client.raise_event(run_id, ids.CANCEL_EVENT, {"by": str(body.get("by") or acting()),
                                                        "reason": body.get("reason")})
    return respond({"run_id": run_id, "cancelling": True}, 202)


async def answer_approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    step_id = req.route_params["step_id"]
    target = await _running(req, client)
    if isinstance(target, func.HttpResponse):
        return target
    run_id, body, view = target
    if not isinstance(body.get("approve"), bool):
        return error("the body needs \"approve\": true or false", 400)
    step = next((s for s in view.get("steps") or [] if s.get("id") == step_id), None)
    if step is None or step.get("kind") != "approval":
        return error(f"run '{run_id}' has no approval step '{step_id}'", 404)
    if step.get("status") != "running":
        return error(f"approval step '{step_id}' of run '{run_id}' is not waiting for a decision "
                     f"(it is {step.get('status')})", 409)
    decision = {"approved": body["approve"], "by": str(body.get("by") or acting()), "reason": body.get("reason")}
    await client.raise_event(run_id, ids.approval_event(step_id), decision)
    return respond({"run_id": run_id, "step": step_id, **decision})


async def raise_event(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    name = req.route_params["name"]
    target = await _running(req, client)
    if isinstance(target, func.HttpResponse):
        return target
    run_id, body, view = target
    waiting = [s for s in view.get("steps") or [] if s.get("kind") == "wait" and s.get("event") == name
               and s.get("status") in ("pending", "running")]
    if not waiting:
        return error(f"run '{run_id}' has no step waiting for event '{name}'", 409)
    await client.raise_event(run_id, ids.wait_event(name), body.get("data"))
    return respond({"run_id": run_id, "event": name, "step": waiting[0]["id"]}, 202)


async def sync(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    started = await schedules.sync(client, await current_configs(refresh=True))
    return respond({"schedules_started": started})
