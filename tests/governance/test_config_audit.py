"""Config changes and admin actions on the audit log: unit-level on real SQLite tables, and end to
end on the embedded engine running function_app.py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.config.loader import load_configs
from kernel.governance import config_audit
from kernel.governance.audit import AuditLog
from kernel.platform import Platform

SCOUT = {"kind": "agent", "id": "scout", "display_name": "Market Scout",
         "purpose": "Watch competitors and report market moves.", "subscriptions": [{"event_types": ["market.*"]}]}
NOTES = {"kind": "mcp_server", "id": "notes", "transport": "stdio", "command": "node", "args": ["notes.js"]}


@pytest.fixture
async def tables(tmp_path: Path) -> AsyncIterator[EmbeddedTableStore]:
    store = EmbeddedTableStore(tmp_path / "tables.sqlite")
    yield store
    await store.close()


def write(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(json.dumps(document))


async def records(log: AuditLog) -> list[tuple[str, str | None, Any]]:
    return [(r.kind, r.subject, r.data) for r in await log.records(config_audit.CHAIN)]


async def test_added_changed_and_removed_documents_are_audited_once_with_the_fields_that_changed(
        tmp_path: Path, tables: EmbeddedTableStore) -> None:
    configs = tmp_path / "configs"
    write(configs, "scout.json", SCOUT)
    write(configs, "notes.json", NOTES)
    log = AuditLog(tables)

    first = await config_audit.record_changes(load_configs([configs]), tables, log)
    assert sorted((c.kind, c.doc_kind, c.doc_id) for c in first) == [
        ("config.added", "agent", "scout"), ("config.added", "mcp_server", "notes")]
    assert await config_audit.record_changes(load_configs([configs]), tables, log) == [], "nothing changed"

    write(configs, "scout.json", {**SCOUT, "purpose": "Watch competitors, prices and report market moves."})
    (configs / "notes.json").unlink()
    second = await config_audit.record_changes(load_configs([configs]), tables, log, actor="user:ana")
    assert [(c.kind, c.doc_id, c.fields) for c in second] == [
        ("config.changed", "scout", ("purpose",)), ("config.removed", "notes", ())]

    stored = await log.records(config_audit.CHAIN)
    assert [r.kind for r in stored] == ["config.added", "config.added", "config.changed", "config.removed"]
    changed = stored[2]
    assert changed.actor == "user:ana" and changed.subject == "agent/scout"
    assert changed.data["fields"] == ["purpose"] and changed.data["previous_version"] == stored[0].data["version"]
    assert "Watch competitors" not in json.dumps([r.to_dict() for r in stored]), "values are never copied"
    assert (await log.verify(config_audit.CHAIN)).ok


async def test_two_syncs_at_once_audit_a_change_once(tmp_path: Path, tables: EmbeddedTableStore) -> None:
    configs = tmp_path / "configs"
    write(configs, "scout.json", SCOUT)
    loaded = load_configs([configs])
    others = [EmbeddedTableStore(tmp_path / "tables.sqlite") for _ in range(4)]
    try:
        results = await asyncio.gather(*(config_audit.record_changes(loaded, store, AuditLog(store))
                                         for store in [tables, *others]))
    finally:
        for store in others:
            await store.close()
    assert sum(len(r) for r in results) == 1
    assert [kind for kind, _, _ in await records(AuditLog(tables))] == ["config.added"]


class FailingAudit(AuditLog):
    """The real log, whose appends fail while ``down`` (an audit table outage)."""

    down = True

    async def append(self, *args: Any, **kwargs: Any) -> Any:
        if self.down:
            raise ConnectionError("audit table unreachable")
        return await super().append(*args, **kwargs)


async def test_a_change_the_audit_could_not_record_is_recorded_by_the_next_sync(
        tmp_path: Path, tables: EmbeddedTableStore, caplog: pytest.LogCaptureFixture) -> None:
    configs = tmp_path / "configs"
    write(configs, "scout.json", SCOUT)
    log = FailingAudit(tables)
    assert await config_audit.record_changes(load_configs([configs]), tables, log) == []
    assert "the next sync retries" in caplog.text
    log.down = False
    retried = await config_audit.record_changes(load_configs([configs]), tables, log)
    assert [(c.kind, c.doc_id) for c in retried] == [("config.added", "scout")]


async def test_config_changes_and_admin_actions_reach_the_audit_log_on_the_engine(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    write(configs, "scout.json", SCOUT)
    async with Platform(state_dir=tmp_path / "state", port=0, config_paths=str(configs)) as platform:
        write(configs, "scout.json", {**SCOUT, "goals": [{"id": "weekly", "description": "A weekly market note."}]})
        report = await platform.sync()
        assert report["config_changes"] == ["changed agent/scout"]

        status, paused = await platform.api("POST", "agents/scout/pause")
        assert status == 200, paused
        status, chain = await platform.api("GET", "audit?chain=scout")
        [pause] = [r for r in chain["records"] if r["kind"] == "admin.pause"]
        assert pause["actor"] == "function-key" and pause["subject"] == "scout"

        status, configs_chain = await platform.api("GET", "audit?chain=configs")
        kinds = [(r["kind"], r["subject"], r["data"]["fields"]) for r in configs_chain["records"]]
        assert kinds[-1] == ("config.changed", "agent/scout", ["goals"])
        assert kinds[0][:2] == ("config.added", "agent/scout")

        status, anchored = await platform.api("POST", "audit/anchor")
        assert status == 200 and anchored["anchored"]["chains"] >= 2
        status, verified = await platform.api("GET", "audit/verify")
        assert verified["ok"] and verified["anchors"]["ok"] and verified["anchors"]["chains_checked"] >= 2
