"""The kernel app: platform-wide HTTP routes (health, config problems)."""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func

from kernel import outputs, roles, runtime, settings
from kernel.inference.factory import describe_provider
from kernel.config.store import default_store
from kernel.deadletters import DeadLetterStore
from kernel.topology import AGENT_OUTPUTS, KERNEL_SUBSCRIPTION

bp = df.Blueprint()


def _json(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json")


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness plus a config summary; never includes setting values."""
    configs = default_store().current()
    return _json(
        {
            "status": "ok",
            "roles": roles.selected_roles(),
            "model": describe_provider(settings.environment()),
            "configs": {
                "agents": len(configs.agents),
                "adapters": len(configs.adapters),
                "mcp_servers": len(configs.mcp_servers),
                "errors": len(configs.errors),
                "warnings": len(configs.problems) - len(configs.errors),
            },
        }
    )


@bp.route(route="configs/problems", methods=["GET"])
def config_problems(req: func.HttpRequest) -> func.HttpResponse:
    """Every problem in the deployed configs, as `aos validate --format json` reports them."""
    configs = default_store().current()
    return _json({"problems": [problem.to_dict() for problem in configs.problems]})


@bp.service_bus_topic_trigger(arg_name="messages", topic_name=AGENT_OUTPUTS, subscription_name=KERNEL_SUBSCRIPTION,
                              connection="ServiceBusConnection", cardinality=func.Cardinality.MANY)
async def route_agent_outputs(messages: list[func.ServiceBusMessage]) -> None:
    """Forward events agents send each other to the events topic; replies stay on the outputs topic."""
    ports = runtime.adapters()
    await outputs.route_outputs([(m.get_body(), m.message_id) for m in messages], ports.sender,
                                DeadLetterStore(ports.blobs, ports.tables))
