"""The audit log's HTTP API: read a chain, verify one chain or all of them (anchors included), anchor."""

from __future__ import annotations

import json
from typing import Any

import azure.functions as func

from kernel import runtime
from kernel.config.drop import current_configs
from kernel.governance.access import acting, sees
from kernel.governance.anchor import Anchors
from kernel.governance.audit import AuditLog


def _json(body: Any, status: int = 200) -> func.HttpResponse:
    return func.HttpResponse(json.dumps(body, indent=2, default=str), status_code=status, mimetype="application/json")


def _log() -> AuditLog:
    return AuditLog(runtime.adapters().tables)


async def records(req: func.HttpRequest) -> func.HttpResponse:
    """``?chain=AGENT&after=SEQ&limit=N``; without ``chain``, the list of chains."""
    log = _log()
    chain = req.params.get("chain")
    namespaces = (await current_configs()).namespaces  # an agent's chain is its address: its namespace's
    if not chain:
        return _json({"chains": [c for c in await log.chains() if sees(str(c), namespaces)]})
    if not sees(chain, namespaces):  # 404, as for no chain: a 403 would say it exists
        return _json({"error": f"no audit chain '{chain}'"}, 404)
    try:
        after = int(req.params.get("after", "0"))
        limit = max(1, min(1000, int(req.params.get("limit", "200"))))
    except ValueError:
        return _json({"error": "'after' and 'limit' must be whole numbers"}, 400)
    found = await log.records(chain, after_seq=after, limit=limit)
    return _json({"chain": chain, "records": [record.to_dict() for record in found]})


def _anchors() -> Anchors:
    ports = runtime.adapters()
    return Anchors(AuditLog(ports.tables), ports.blobs)


async def verify(req: func.HttpRequest) -> func.HttpResponse:
    """``?chain=AGENT`` or every chain: ok, records checked, the first broken record per chain,
    and what no longer matches the latest anchors (200 either way: the answer is the report)."""
    chain = req.params.get("chain") or None
    report = (await _log().verify(chain)).to_dict()
    anchors = (await _anchors().verify(chain)).to_dict()
    return _json({**report, "ok": report["ok"] and anchors["ok"], "anchors": anchors})


async def anchor(req: func.HttpRequest) -> func.HttpResponse:
    """Anchor every chain's head now; ``{"anchored": null}`` when nothing changed since the last anchor."""
    return _json({"anchored": await _anchors().anchor(actor=acting())})


async def anchor_heads() -> None:
    """The timer's anchor."""
    await _anchors().anchor()
