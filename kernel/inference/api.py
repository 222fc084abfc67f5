"""``GET /api/usage``: token usage per agent, adapter, endpoint and day (the ``usage`` table)."""

from __future__ import annotations

import json
import re
from typing import Any

import azure.functions as func

from kernel import runtime
from kernel.config.models import REFERENCE_PATTERN as ID_PATTERN
from kernel.config.drop import current_configs
from kernel.inference.usage import UsageLedger

MAX_DAYS = 366


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2, default=str), status_code=status, mimetype="application/json")


async def usage(req: func.HttpRequest) -> func.HttpResponse:
    """``?agent=ID[,ID...]`` (default: every declared agent) ``&days=N`` (default 30, today included)."""
    raw = [part.strip() for part in (req.params.get("agent") or "").split(",") if part.strip()]
    bad = [agent for agent in raw if not re.match(ID_PATTERN, agent)]
    if bad:
        return _json({"error": f"not an agent id: {', '.join(bad)}"}, 400)
    try:
        days = int(req.params.get("days", "30"))
    except ValueError:
        return _json({"error": "'days' must be a whole number"}, 400)
    if not 1 <= days <= MAX_DAYS:
        return _json({"error": f"'days' must be between 1 and {MAX_DAYS}"}, 400)
    agents = raw or sorted((await current_configs()).agents)
    report = await UsageLedger(runtime.adapters().tables).report(agents, days=days)
    return _json(report)

