"""Each finished turn's decision is on its agent's audit chain, once, with its rationale."""

from __future__ import annotations

import json
from pathlib import Path

from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.governance.audit import AuditLog
from realm_of_agents.decisions import KIND, audit_decision
from tests.realm.platform_support import finished_turn, ok, running, send_event

SCOUT = {"kind": "agent", "id": "scout", "display_name": "Market Scout",
         "purpose": "Watch competitors and report market moves.",
         "scope": {"in_scope": ["competitor pricing", "market moves"], "out_of_scope": ["payroll"]},
         "subscriptions": [{"event_types": ["market.*", "hr.*"]}]}


async def test_replied_and_declined_turns_leave_their_decision_and_rationale_on_the_chain(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "scout.json").write_text(json.dumps(SCOUT))
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        moved = await send_event(platform, "scout", "market.move", {"text": "A competitor cut pricing by 10%."})
        await finished_turn(platform, "scout", moved["turn_id"])
        payroll = await send_event(platform, "scout", "hr.payroll", {"text": "Run payroll for March."})
        await finished_turn(platform, "scout", payroll["turn_id"])
        records = (await ok(platform, "GET", "audit?chain=scout"))["records"]
        verified = await ok(platform, "GET", "audit/verify?chain=scout")
        archived = await ok(platform, "GET", f"agents/scout/turns/{moved['turn_id']}")

    decisions = {r["subject"]: r for r in records if r["kind"] == KIND}
    assert set(decisions) == {moved["turn_id"], payroll["turn_id"]}
    replied, declined = decisions[moved["turn_id"]]["data"], decisions[payroll["turn_id"]]["data"]
    assert replied["outcome"] == "replied" and replied["event_type"] == "market.move"
    assert replied["rationale"] == archived["decision"]["rationale"] and replied["provider"] == "offline"
    assert replied["alignment"]["aligned"] is True and replied["model_calls"] >= 1
    assert len(replied["reply_sha256"]) == 64 and archived["reply"] not in json.dumps(records), "a digest, not the text"
    assert declined["outcome"] == "declined" and "payroll" in declined["rationale"]
    assert declined["alignment"]["aligned"] is False and declined["model_calls"] == 0
    assert decisions[moved["turn_id"]]["actor"] == "scout"
    assert verified["ok"]


async def test_a_rerun_of_the_archive_step_does_not_record_the_decision_twice(tmp_path: Path) -> None:
    tables = EmbeddedTableStore(tmp_path / "tables.sqlite")
    try:
        audit = AuditLog(tables)
        record = {"agent_id": "scout", "turn_id": "t-1", "outcome": "replied", "reply": "ok",
                  "event": {"id": "e-1", "type": "market.move"}, "decision": {"action": "replied", "rationale": "r"}}
        await audit_decision(audit, record, retry=False)
        await audit.append("scout", "tool.call", actor="scout", data={"n": 1})  # something in between
        await audit_decision(audit, record, retry=True)
        await audit_decision(audit, {**record, "turn_id": "t-2"}, retry=True)
        kinds = [(r.kind, r.subject) for r in await audit.records("scout")]
        assert kinds == [(KIND, "t-1"), ("tool.call", None), (KIND, "t-2")]
    finally:
        await tables.close()
