"""The RealmOfAgents app: agents and their routes."""

from __future__ import annotations

import json

import azure.durable_functions as df
import azure.functions as func

from kernel.config.store import default_store

bp = df.Blueprint()


@bp.route(route="agents", methods=["GET"])
def list_agents(req: func.HttpRequest) -> func.HttpResponse:
    """The agents declared in config, with the config version each one runs."""
    configs = default_store().current()
    agents = [
        {
            "id": agent.id,
            "display_name": agent.display_name,
            "enabled": agent.enabled,
            "purpose": agent.purpose,
            "config_version": configs.source("agent", agent.id).version,
            "source": configs.source("agent", agent.id).file,
        }
        for agent in sorted(configs.agents.values(), key=lambda a: a.id)
    ]
    return func.HttpResponse(json.dumps({"agents": agents}, indent=2), mimetype="application/json")
