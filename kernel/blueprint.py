"""The kernel app: platform-wide HTTP routes (config problems, audit, model usage); health is in kernel/health."""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func

from kernel import outputs, runtime, tool_responses
from kernel.config.drop import current_configs
from kernel.config.store import default_store
from kernel.deadletters import DeadLetterStore
from kernel.governance import api as audit_api
from kernel.governance.access import requires
from kernel.governance.audit import AuditLog
from kernel.inference import api as usage_api
from kernel.topology import AGENT_OUTPUTS, KERNEL_SUBSCRIPTION, MCP_RESPONSES

bp = df.Blueprint()


def _json(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


@bp.route(route="configs/problems", methods=["GET"])
@requires("reader")
async def config_problems(req: func.HttpRequest) -> func.HttpResponse:
    """Every problem in the deployed configs (and those dropped into AOS_CONFIG_CONTAINER), as
    `aos validate --format json` reports them."""
    configs = await current_configs()
    return _json({"problems": [problem.to_dict() for problem in configs.problems]})


@bp.service_bus_topic_trigger(arg_name="messages", topic_name=AGENT_OUTPUTS, subscription_name=KERNEL_SUBSCRIPTION,
                              connection="ServiceBusConnection", cardinality=func.Cardinality.MANY)
@bp.durable_client_input(client_name="workflows")
async def route_agent_outputs(messages: list[func.ServiceBusMessage], workflows: df.DurableOrchestrationClient) -> None:
    """Forward events agents send each other to the events topic; replies stay on the outputs topic,
    and those to a workflow run are raised in it (this app's task hub)."""
    ports = runtime.adapters()
    await current_configs()  # dropped configs mirrored: a dropped agent's events are routed
    await outputs.route_outputs([(m.get_body(), m.message_id) for m in messages], ports.sender,
                                DeadLetterStore(ports.blobs, ports.tables), configs=default_store().current,
                                audit=AuditLog(ports.tables), workflows=workflows)


@bp.service_bus_topic_trigger(arg_name="messages", topic_name=MCP_RESPONSES, subscription_name=KERNEL_SUBSCRIPTION,
                              connection="ServiceBusConnection", cardinality=func.Cardinality.MANY)
@bp.durable_client_input(client_name="client", task_hub="%AOS_REALM_TASK_HUB%")
@bp.durable_client_input(client_name="workflows")
async def deliver_tool_responses(messages: list[func.ServiceBusMessage], client: df.DurableOrchestrationClient,
                                 workflows: df.DurableOrchestrationClient) -> None:
    """Raise each MCP gateway answer in the turn waiting for it (in the realm app's task hub), or in
    the workflow run waiting for it (in this app's hub)."""
    ports = runtime.adapters()
    await tool_responses.deliver_responses([(m.get_body(), m.message_id) for m in messages], client,
                                           DeadLetterStore(ports.blobs, ports.tables), workflows)


@bp.route(route="audit", methods=["GET"])
@requires("admin")
async def audit_records(req: func.HttpRequest) -> func.HttpResponse:
    """An audit chain's records (``?chain=AGENT&after=SEQ``), or the chains."""
    return await audit_api.records(req)


@bp.route(route="audit/verify", methods=["GET"])
@requires("admin")
async def audit_verify(req: func.HttpRequest) -> func.HttpResponse:
    """Recompute the hash chains; the first broken record of each broken chain."""
    return await audit_api.verify(req)


@bp.route(route="audit/anchor", methods=["POST"])
@requires("admin")
async def audit_anchor_now(req: func.HttpRequest) -> func.HttpResponse:
    """Anchor every chain's head now (the timer does it every five minutes)."""
    return await audit_api.anchor(req)


@bp.timer_trigger(arg_name="timer", schedule="0 */5 * * * *", run_on_startup=False)
async def audit_anchor(timer: func.TimerRequest) -> None:
    """Snapshot every audit chain's head into the anchors chain and blob container, so a chain
    cut short is caught by verify (kernel.governance.anchor)."""
    await audit_api.anchor_heads()


@bp.route(route="usage", methods=["GET"])
@requires("reader")
async def model_usage(req: func.HttpRequest) -> func.HttpResponse:
    """Tokens per agent, adapter, endpoint and day (``?agent=ID[,ID]&days=N``), cache hits and fallbacks."""
    return await usage_api.usage(req)
