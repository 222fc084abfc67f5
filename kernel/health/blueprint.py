"""Health routes, served by every app whatever its roles (``kernel.roles.COMMON_BLUEPRINTS``).

- ``GET /api/health``: the config summary it always answered (roles, model, config counts); anonymous.
- ``GET /api/health/live``: the process answers; touches no dependency; anonymous.
- ``GET /api/health/ready``: every dependency of the app's roles checked now; 200 when ready
  (``ok`` or ``degraded``), 503 when a required one is not; anonymous, so platform probes can call
  it, and so it says only each check's name, status, latency and error class.
- ``GET /api/health/details``: the same checks with their (scrubbed) messages and details; needs
  the reader role, and answers 200 whatever the verdict (the verdict is in the body).

``?timeout=SECONDS`` (0.1-30, default 5) bounds each check of ``ready`` and ``details``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

import azure.durable_functions as df
import azure.functions as func

from kernel import roles, settings
from kernel.config.store import default_store
from kernel.governance.access import requires
from kernel.health.checks import readiness
from kernel.health.report import FAILED

bp = df.Blueprint()
DEFAULT_TIMEOUT, MIN_TIMEOUT, MAX_TIMEOUT = 5.0, 0.1, 30.0
_NO_STORE = {"Cache-Control": "no-store"}


def _json(body: object, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2), status_code=status, mimetype="application/json",
                             headers=_NO_STORE)


@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health(req: func.HttpRequest) -> func.HttpResponse:
    """Liveness plus a config summary; never includes setting values. (The provider module is
    imported here, on use, as it imports the openai client, which other roles' apps never need.)"""
    from kernel.inference.factory import describe_provider

    configs = default_store().current()
    return _json(
        {
            "status": "ok",
            "roles": roles.selected_roles(),
            "model": describe_provider(settings.environment(), configs.endpoints),
            "configs": {
                "agents": len(configs.agents),
                "adapters": len(configs.adapters),
                "mcp_servers": len(configs.mcp_servers),
                "inference_endpoints": len(configs.endpoints),
                "errors": len(configs.errors),
                "warnings": len(configs.problems) - len(configs.errors),
            },
        }
    )


@bp.route(route="health/live", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
def health_live(req: func.HttpRequest) -> func.HttpResponse:
    """The process is up and answering; no dependency is called, so it stays cheap."""
    return _json({"status": "ok", "roles": roles.selected_roles()})


@bp.route(route="health/ready", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def health_ready(req: func.HttpRequest) -> func.HttpResponse:
    """Every dependency checked: 503 when a required one fails; a summary without messages."""
    return await _report(req, detailed=False)


@bp.route(route="health/details", methods=["GET"])
@requires("reader")
async def health_details(req: func.HttpRequest) -> func.HttpResponse:
    """The readiness checks with their messages and details, for operators (``aos health``)."""
    return await _report(req, detailed=True)


async def _report(req: func.HttpRequest, *, detailed: bool) -> func.HttpResponse:
    raw = req.params.get("timeout", "")
    try:
        timeout = float(raw) if raw else DEFAULT_TIMEOUT
    except ValueError:
        timeout = float("nan")
    if not MIN_TIMEOUT <= timeout <= MAX_TIMEOUT:
        return _json({"error": f"query parameter timeout must be a number of seconds from {MIN_TIMEOUT:g} to "
                               f"{MAX_TIMEOUT:g}, got {raw[:20]!r}"}, 400)
    selected = roles.selected_roles()
    status, results = await readiness(selected, timeout=timeout, environ=settings.environment())
    body = {"status": status, "roles": selected,
            "checked_at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "checks": [result.full() if detailed else result.summary() for result in results]}
    if detailed:
        return _json({**body, "timeout_seconds": timeout})
    return _json(body, 503 if status == FAILED else 200)
