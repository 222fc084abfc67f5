"""The kernel's workflows: run and schedule orchestrations, their activities, the trigger on
agent-events, the schedule sync, and the HTTP API under /api/workflows.

This module only binds functions to triggers; the work is in the modules it names.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
import azure.functions as func

from kernel import runtime
from kernel.config.drop import current_configs
from kernel.deadletters import DeadLetterStore
from kernel.governance.access import requires
from kernel.topology import AGENT_EVENTS, WORKFLOWS_SUBSCRIPTION
from kernel.workflows import activities, api, orchestration, schedules, triggers
from kernel.workflows.runs import RunIndex

bp = df.Blueprint()


@bp.orchestration_trigger(context_name="context", orchestration=orchestration.ORCHESTRATOR)
def workflow_run(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    return (yield from orchestration.run_orchestrator(context))


@bp.orchestration_trigger(context_name="context", orchestration=schedules.ORCHESTRATOR)
def workflow_schedule(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    return (yield from schedules.schedule_orchestrator(context))


@bp.activity_trigger(input_name="request", activity=orchestration.SEND_AGENT)
async def workflow_send_agent(request: dict[str, Any]) -> str | dict[str, str]:
    """An agent step's event on agent-events; the reply comes back through the outputs router."""
    return await activities.send_agent_event(request)


@bp.activity_trigger(input_name="request", activity=orchestration.SEND_TOOL)
async def workflow_send_tool(request: dict[str, Any]) -> str:
    """A tool step's request to the MCP gateway; the answer comes back on mcp-responses."""
    return await activities.send_tool_request(request)


@bp.activity_trigger(input_name="row", activity=orchestration.INDEX)
async def workflow_index(row: dict[str, Any]) -> None:
    await activities.index_run(row)


@bp.activity_trigger(input_name="request", activity=schedules.FIRE)
@bp.durable_client_input(client_name="client")
async def workflow_schedule_fire(request: dict[str, Any], client: df.DurableOrchestrationClient) -> bool:
    return await activities.fire_schedule(request, client)


@bp.service_bus_topic_trigger(arg_name="messages", topic_name=AGENT_EVENTS, subscription_name=WORKFLOWS_SUBSCRIPTION,
                              connection="ServiceBusConnection", cardinality=func.Cardinality.MANY)
@bp.durable_client_input(client_name="client")
async def workflow_triggers(messages: list[func.ServiceBusMessage], client: df.DurableOrchestrationClient) -> None:
    """Broadcast events of the types workflows trigger on start their runs."""
    ports = runtime.adapters()
    await triggers.start_from_events([(m.get_body(), m.message_id) for m in messages], client,
                                     await current_configs(), RunIndex(ports.tables),
                                     DeadLetterStore(ports.blobs, ports.tables))


@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=True)
@bp.durable_client_input(client_name="client")
async def workflow_schedule_sync(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Start the schedule orchestrations of scheduled workflows, at start and every five minutes."""
    await schedules.sync(client, await current_configs(refresh=True))


@bp.route(route="workflows", methods=["GET"])
@requires("reader")
async def list_workflows(req: func.HttpRequest) -> func.HttpResponse:
    """The declared workflows: steps, DAG, trigger, input schema."""
    return await api.list_workflows(req)


@bp.route(route="workflows/sync", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("admin")
async def sync_workflows(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start the schedules of scheduled workflows now."""
    return await api.sync(req, client)


@bp.route(route="workflows/{workflow_id}/start", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def start_workflow_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Start a run: ``{"input": {...}}`` (checked against the workflow's input schema) → 202 with run_id."""
    return await api.start_run(req, client)


@bp.route(route="workflows/runs", methods=["GET"])
@requires("reader")
async def list_workflow_runs(req: func.HttpRequest) -> func.HttpResponse:
    """Runs, newest first: ``?workflow=ID&limit=50``."""
    return await api.list_runs(req)


@bp.route(route="workflows/runs/{run_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
@requires("reader")
async def get_workflow_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """A run with each step's status, attempts, timing, inputs and outputs."""
    return await api.get_run(req, client)


@bp.route(route="workflows/runs/{run_id}/cancel", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def cancel_workflow_run(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Cancel a run: no new steps, then compensation of what was done. ``{"reason"?}``"""
    return await api.cancel_run(req, client)


@bp.route(route="workflows/runs/{run_id}/steps/{step_id}/approval", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def answer_workflow_approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Approve or decline an approval step: ``{"approve": true|false, "by"?, "reason"?}``."""
    return await api.answer_approval(req, client)


@bp.route(route="workflows/runs/{run_id}/events/{name}", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def raise_workflow_event(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Raise the event a wait step waits for: ``{"data"?: ...}``."""
    return await api.raise_event(req, client)
