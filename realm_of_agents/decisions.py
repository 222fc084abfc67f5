"""Every finished turn's decision on the agent's audit chain: what it decided, why, and on what.

The record (``turn.decision``) carries the outcome and its rationale, how the purpose check judged
the event, which model answered (endpoint, adapter, fallback), how many tool calls and tokens the
turn used, the policies in force and their refusals, and a digest of the reply — not the reply
itself: the archive keeps the turn in full, the audit log proves which one it was.

It is written by the archive activity, which runs at least once per turn. Only a rerun (the turn
was archived already) looks among the chain's last few records for the one it may have written, so
a first run costs one append and nothing more.
"""

from __future__ import annotations

from typing import Any

from kernel.governance.audit import AuditLog
from kernel.governance.redaction import digest

KIND = "turn.decision"
#: How far back a rerun looks for the record it may already have written.
_LOOKBACK = 8


def decision_data(record: dict[str, Any]) -> dict[str, Any]:
    """The audited summary of an archived turn record."""
    alignment = record.get("alignment") or {}
    models = [step for step in record.get("steps") or [] if step.get("kind") == "model" and step.get("model")]
    last = models[-1] if models else {}
    event = record.get("event") or {}
    return {
        "turn_id": record["turn_id"], "event_id": event.get("id"), "event_type": event.get("type"),
        "event_source": event.get("source"), "outcome": record.get("outcome"),
        "rationale": (record.get("decision") or {}).get("rationale"),
        "alignment": {key: alignment.get(key) for key in ("aligned", "method", "score")} if alignment else None,
        "provider": record.get("provider"), "model": last.get("model"), "endpoint": last.get("endpoint"),
        "adapter": last.get("adapter"), "fallback": last.get("fallback"), "model_calls": len(models),
        "tool_calls": record.get("tool_calls", 0), "usage": record.get("usage"),
        "policies": record.get("policies") or [], "refusals": record.get("refusals") or [],
        "error": record.get("error"), "config_version": record.get("config_version"),
        "reply_sha256": digest(record["reply"]) if record.get("reply") is not None else None,
        "outputs": [output.get("id") for output in record.get("outputs") or []],
    }


async def audit_decision(audit: AuditLog, record: dict[str, Any], *, retry: bool) -> None:
    """Append the turn's ``turn.decision`` to its agent's chain, once (``retry``: it may be there already)."""
    chain, turn_id = record["agent_id"], record["turn_id"]
    if retry:
        seq, _ = await audit.last(chain)
        for earlier in await audit.records(chain, after_seq=max(0, seq - _LOOKBACK)):
            if earlier.kind == KIND and earlier.subject == turn_id:
                return
    await audit.append(chain, KIND, actor=chain, subject=turn_id, data=decision_data(record))
