"""The RealmOfAgents app: the agent entity, its turns and schedules, the wake trigger, the API.

This module only binds functions to triggers; the work is in the modules it names.
"""

from __future__ import annotations

from typing import Any

import azure.durable_functions as df
import azure.functions as func

from kernel.governance.access import requires
from kernel.telemetry.http import traced_route
from kernel.topology import AGENT_EVENTS, REALM_SUBSCRIPTION
from realm_of_agents import activities, api, commands, inline_steps, registration, retention, schedules, turn
from realm_of_agents.entity import ENTITY_NAME, agent_entity
from realm_of_agents.services import services
from realm_of_agents.tracing import traced_activity
from realm_of_agents.wake import Delivery, wake

bp = df.Blueprint()
CONNECTION = "ServiceBusConnection"


# -- durable functions ----------------------------------------------------------------------------

@bp.entity_trigger(context_name="context", entity_name=ENTITY_NAME)
def agent(context: df.DurableEntityContext) -> None:
    agent_entity(context)


@bp.orchestration_trigger(context_name="context", orchestration=turn.ORCHESTRATOR)
def agent_turn(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    return (yield from turn.turn_orchestrator(context))


@bp.orchestration_trigger(context_name="context", orchestration=commands.ORCHESTRATOR)
def agent_command(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    return (yield from commands.command_orchestrator(context))


@bp.orchestration_trigger(context_name="context", orchestration=schedules.ORCHESTRATOR)
def agent_schedule(context: df.DurableOrchestrationContext):  # type: ignore[no-untyped-def]
    return (yield from schedules.schedule_orchestrator(context))


@bp.activity_trigger(input_name="request", activity=turn.ASSESS)
@traced_activity(turn.ASSESS)
async def agent_assess(request: dict[str, Any]) -> dict[str, Any]:
    return await activities.assess(request)


@bp.activity_trigger(input_name="request", activity=turn.MODEL)
@traced_activity(turn.MODEL)
async def agent_model(request: dict[str, Any]) -> dict[str, Any]:
    return await activities.model_call(request)


@bp.activity_trigger(input_name="request", activity=turn.TOOL)
@traced_activity(turn.TOOL)
async def agent_tool(request: dict[str, Any]) -> dict[str, Any]:
    return await activities.tool_call(request)


@bp.activity_trigger(input_name="request", activity=turn.TOOL_REQUEST)
@traced_activity(turn.TOOL_REQUEST)
async def agent_tool_request(request: dict[str, Any]) -> dict[str, Any]:
    """Send an MCP request to the gateway (the turn then waits for the answer as an external event)."""
    return await activities.tool_request(request)


@bp.activity_trigger(input_name="request", activity=turn.APPROVAL_REQUESTED)
async def agent_approval_requested(request: dict[str, Any]) -> None:
    await activities.approval_requested(request)


@bp.activity_trigger(input_name="request", activity=turn.APPROVAL_DECIDED)
async def agent_approval_decided(request: dict[str, Any]) -> None:
    await activities.approval_decided(request)


@bp.activity_trigger(input_name="request", activity=turn.ARCHIVE)
@traced_activity(turn.ARCHIVE)
async def agent_archive(request: dict[str, Any]) -> None:
    await activities.archive(request)


@bp.activity_trigger(input_name="request", activity=turn.PUBLISH)
@traced_activity(turn.PUBLISH)
async def agent_publish(request: dict[str, Any]) -> int:
    return await activities.publish(request)


@bp.activity_trigger(input_name="request", activity=turn.CONCLUDE)
async def agent_conclude(request: dict[str, Any]) -> dict[str, Any]:
    """Archive, then publish (each in its own span, as agent_archive and agent_publish trace them)."""
    return await activities.conclude(request)


@bp.activity_trigger(input_name="request", activity=turn.REPORT)
async def agent_report(request: dict[str, Any]) -> str:
    return await activities.report(request)


@bp.activity_trigger(input_name="request", activity=turn.CONFIG)
async def agent_config(request: dict[str, Any]) -> dict[str, Any] | None:
    return await activities.declared_config(request)


@bp.activity_trigger(input_name="request", activity=turn.SUMMARIZE)
async def agent_summarize(request: dict[str, Any]) -> str | None:
    return await activities.summarize(request)


@bp.activity_trigger(input_name="request", activity=turn.POLICY)
async def agent_policy(request: dict[str, Any]) -> dict[str, Any]:
    """The policy read; the turn's first also runs the steps after it that need no durable wait."""
    return await inline_steps.policy(request)


@bp.activity_trigger(input_name="request", activity=turn.POLICY_RECORD)
async def agent_policy_record(request: dict[str, Any]) -> None:
    await activities.policy_record(request)


@bp.activity_trigger(input_name="request", activity=schedules.SEND_EVENT)
async def agent_send_event(request: dict[str, Any]) -> None:
    await activities.send_event(request)


@bp.activity_trigger(input_name="request", activity=turn.GRANT)
@bp.durable_client_input(client_name="client")
async def agent_grant(request: dict[str, Any], client: df.DurableOrchestrationClient) -> bool:
    """Tell a queued turn it may go (the entity already made it the agent's current event)."""
    return await activities.grant(request, client)


# -- wake and config sync -------------------------------------------------------------------------

@bp.service_bus_topic_trigger(arg_name="messages", topic_name=AGENT_EVENTS, subscription_name=REALM_SUBSCRIPTION,
                              connection=CONNECTION, cardinality=func.Cardinality.MANY)
@bp.durable_client_input(client_name="client")
async def agent_wake(messages: list[func.ServiceBusMessage], client: df.DurableOrchestrationClient) -> None:
    deliveries = [Delivery(m.get_body(), m.message_id, m.sequence_number) for m in messages]
    await wake(deliveries, client, services())


@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=True)
@bp.durable_client_input(client_name="client")
async def agent_config_sync(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Register agents from config at start and every five minutes (a safety net for the
    file watcher locally and the blob trigger in Azure)."""
    realm = services()
    await registration.sync(client, await realm.current_configs(refresh=True), realm.adapters.tables)


@bp.timer_trigger(arg_name="timer", schedule="0 23 * * * *", run_on_startup=False)
@bp.durable_client_input(client_name="client")
async def agent_history_retention(timer: func.TimerRequest, client: df.DurableOrchestrationClient) -> None:
    """Hourly: purge the Durable histories of finished turns, commands and schedules older than
    AOS_HISTORY_RETENTION_DAYS (their archive records and the agents' state stay), then sweep
    expired response cache entries and approvals past the retention."""
    await retention.run(client)
    await retention.sweep_tables(services().adapters.tables)


# -- HTTP API -------------------------------------------------------------------------------------

@bp.route(route="agents", methods=["GET"])
@bp.durable_client_input(client_name="client")
@requires("reader")
async def list_agents(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Every agent, declared or retired, with status and counters."""
    return await api.list_agents(req, client)


@bp.route(route="agents/sync", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("admin")
async def sync_agents(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Register agents from the current configs now."""
    return await api.sync_agents(req, client)


@bp.route(route="agents/{agent_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
@requires("reader")
async def get_agent(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """One agent: status, purpose, goals, counters, memory."""
    return await api.get_agent(req, client)


@bp.route(route="agents/{agent_id}/events", methods=["POST"])
@bp.durable_client_input(client_name="client")
@traced_route("agents/{agent_id}/events")
@requires("operator")
async def send_agent_event(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Send an event to the agent (through the agent-events topic, like any other event)."""
    return await api.send_event(req, client)


@bp.route(route="agents/{agent_id}/pause", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def pause_agent(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.command(req, client, "pause")


@bp.route(route="agents/{agent_id}/resume", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def resume_agent(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.command(req, client, "resume")


@bp.route(route="agents/{agent_id}/retire", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("admin")
async def retire_agent(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.command(req, client, "retire")


@bp.route(route="agents/{agent_id}/facts", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def remember_fact(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.remember(req, client)


@bp.route(route="agents/{agent_id}/goals/{goal_id}", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def update_goal(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.update_goal(req, client)


@bp.route(route="agents/{agent_id}/memory", methods=["GET"])
@bp.durable_client_input(client_name="client")
@requires("reader")
async def search_memory(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Search the agent's archived turns and hot memory: ?q=words&limit=10."""
    return await api.search_memory(req, client)


@bp.route(route="agents/{agent_id}/turns", methods=["GET"])
@bp.durable_client_input(client_name="client")
@requires("reader")
async def recent_turns(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    return await api.recent_turns(req, client)


@bp.route(route="agents/{agent_id}/turns/{turn_id}", methods=["GET"])
@bp.durable_client_input(client_name="client")
@requires("reader")
async def get_turn(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """A turn in full from the archive, or its progress while it runs."""
    return await api.get_turn(req, client)


@bp.route(route="deadletters", methods=["GET"])
@requires("reader")
async def list_deadletters(req: func.HttpRequest) -> func.HttpResponse:
    """Messages the platform could not act on, newest first, with the reason."""
    return await api.list_deadletters(req)


@bp.route(route="deadletters/{record_id}", methods=["GET"])
@requires("reader")
async def get_deadletter(req: func.HttpRequest) -> func.HttpResponse:
    return await api.get_deadletter(req)


@bp.route(route="approvals", methods=["GET"])
@requires("reader")
async def list_approvals(req: func.HttpRequest) -> func.HttpResponse:
    """Tool calls waiting for a human decision, with their deadlines."""
    return await api.list_approvals(req)


@bp.route(route="approvals/{approval_id}", methods=["GET"])
@requires("reader")
async def get_approval(req: func.HttpRequest) -> func.HttpResponse:
    return await api.get_approval(req)


@bp.route(route="approvals/{approval_id}", methods=["POST"])
@bp.durable_client_input(client_name="client")
@requires("operator")
async def answer_approval(req: func.HttpRequest, client: df.DurableOrchestrationClient) -> func.HttpResponse:
    """Approve or decline: ``{"approve": true|false, "by": "name", "reason": "..."}``."""
    return await api.answer_approval(req, client)
