"""Config sync: make the agent entities match the agent configs.

Run at start, on a timer, when the local platform sees a config file change, and when a config
is dropped into the ``agent-configs`` blob container. Each run compares the configs with the
registry (table ``agents``: the config version and schedules each agent was last given) and

* configures agents that are new or whose config version changed (the entity records the
  version; a purpose change is remembered as a fact; a disabled agent is paused);
* starts, replaces or stops their schedule orchestrations;
* retires agents whose config is gone (their state is kept) — unless their file is only broken,
  in which case the agent keeps running its last good config and the problem is reported;
* audits every config document added, changed or removed (``kernel.governance.config_audit``);
* refuses agents beyond their namespace's ``quotas.agents`` (``kernel.governance.quota``): they
  are not registered (one that ran is retired), the registry row says ``refused`` with the
  reason, and ``quota.refused`` goes on the agent's audit chain once per config version.

Agents are keyed by address (``kernel.namespaces``): the id in the default namespace,
``<namespace>.<id>`` elsewhere.

Every step is idempotent (command instance ids derive from the config version), so two syncs at
once, or a sync interrupted half way, leave the same result.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import azure.durable_functions as df

from kernel.config.loader import ConfigSet
from kernel.adapters import redact as redact_text
from kernel.config.models import AgentConfig
from kernel.governance import config_audit
from kernel.governance.audit import AuditLog
from kernel.governance.quota import QUOTA_REFUSED, AgentAdmission, admit_agents
from kernel.namespaces import namespace_of
from kernel.ports import AlreadyExists, TableStore
from kernel.table_pages import rows_in_order
from realm_of_agents import commands, ids, schedules
from kernel.instances import FINISHED, runtime_status, start_once

log = logging.getLogger("aos.realm.registration")
TABLE = "agents"
PARTITION = "agent"
#: Create-only markers, one per refused agent and config version (``kernel.governance.quota``).
REFUSALS = "quota-refusal"


@dataclass
class SyncReport:
    configured: list[str] = field(default_factory=list)
    retired: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept_broken: list[str] = field(default_factory=list)
    schedules_started: list[str] = field(default_factory=list)
    schedules_stopped: list[str] = field(default_factory=list)
    config_changes: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)
    #: the configure and retire command instances this sync started (a caller may wait for them)
    commands: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


async def registered(tables: TableStore) -> dict[str, dict[str, Any]]:
    """The registry: agent id -> row (version, status, schedules, source, updated)."""
    return {row["RowKey"]: row for row in await tables.query(TABLE, PARTITION)}


_sync_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = weakref.WeakKeyDictionary()


def sync_lock() -> asyncio.Lock:
    """One sync at a time per event loop. Two at once (the startup timer and the platform's own,
    or two API calls) would interleave their registry reads and writes: each would report part of
    the work, and a config change could be audited twice."""
    loop = asyncio.get_running_loop()
    lock = _sync_locks.get(loop)
    if lock is None:
        lock = _sync_locks[loop] = asyncio.Lock()
    return lock


async def sync(client: df.DurableOrchestrationClient, configs: ConfigSet, tables: TableStore,
               now: datetime | None = None, *, actor: str = "config-sync", locked: bool = False) -> SyncReport:
    """``actor`` is who asked (the audit records of config changes name it). ``locked``: the
    caller already holds ``sync_lock()``."""
    if not locked:
        async with sync_lock():
            return await sync(client, configs, tables, now, actor=actor, locked=True)
    now = now or datetime.now(timezone.utc)
    report = SyncReport()
    try:
        changes = await config_audit.record_changes(configs, tables, AuditLog(tables), actor=actor)
        report.config_changes = [f"{c.kind.removeprefix('config.')} {c.doc_kind}/{c.doc_id}" for c in changes]
    except Exception as error:  # noqa: BLE001 - the agents still sync; the register is unchanged, so the next sync audits
        log.error("config sync: config changes not audited this time (%s: %s)", type(error).__name__,
                  redact_text(str(error))[:200])
    broken_files = {problem.file for problem in configs.errors}
    active = await _active_ids(tables) if _agent_quotas(configs) else ()
    admission = admit_agents(configs, active)
    step = _Step(client, configs, tables, broken_files, admission, now, actor, report)
    seen: set[str] = set()
    done = 0
    async for row in rows_in_order(tables, TABLE, PARTITION):  # one page of the registry at a time
        address = row["RowKey"]
        if address in configs.agents:
            seen.add(address)
            await step.declared(address, row)
        else:
            await step.undeclared(address, row)
        done = await _let_commands_run(done)
    for address in sorted(configs.agents):
        if address not in seen:
            await step.declared(address, None)
            done = await _let_commands_run(done)
    for found in (report.configured, report.retired, report.unchanged, report.kept_broken):
        found.sort()
    return report


#: Agents synced between two turns of the event loop (``_let_commands_run``).
YIELD_EVERY = 100


async def _let_commands_run(done: int) -> int:
    """Count one more agent synced; every ``YIELD_EVERY``, give the event loop a turn. A client in
    the same process (the embedded engine's) answers without ever suspending, so without it ten
    thousand configure commands would all be queued before the first one ran."""
    done += 1
    if done % YIELD_EVERY == 0:
        await asyncio.sleep(0)
    return done


def _agent_quotas(configs: ConfigSet) -> bool:
    """Whether any namespace limits its agents (only then does admission need the registry)."""
    return any(document.quotas.agents is not None for document in configs.namespaces.values())


async def _active_ids(tables: TableStore) -> set[str]:
    return {row["RowKey"] async for row in rows_in_order(tables, TABLE, PARTITION) if row.get("status") == "active"}


@dataclass
class _Step:
    """What one sync does for one registry row or declared agent."""

    client: df.DurableOrchestrationClient
    configs: ConfigSet
    tables: TableStore
    broken_files: set[str]
    admission: AgentAdmission
    now: datetime
    actor: str
    report: SyncReport

    async def declared(self, address: str, row: dict[str, Any] | None) -> None:
        """Configure the agent when its row is missing or older; keep its schedules running. An
        agent registered at this version from this file, with no schedules, is not even built."""
        configs, report = self.configs, self.report
        source = configs.source("agent", address)
        if source.file in self.broken_files:  # the config store kept the last good version of a broken file
            log.warning("agent '%s': its config file %s has errors; it keeps its last good config", address, source.file)
            report.kept_broken.append(address)
            return
        if address in self.admission.refused:
            await _refuse(self.client, address, self.admission.refused[address], source.version, source.file, row,
                          self.tables, self.now, self.actor, report)
            return
        if row is not None and _registered_as(row, source.version, source.file, "{}"):
            report.unchanged.append(address)
            return
        agent = configs.agents[address]
        wanted = {s.name: schedules.schedule_instance(schedules.schedule_input(agent, s))
                  for s in agent.schedules} if agent.enabled else {}
        running = json.loads(row.get("schedules") or "{}") if row else {}
        if row is None or row.get("version") != source.version or row.get("status") in ("retired", "refused"):
            report.commands.append(await _command(self.client, address, "configure", {
                "config": agent.model_dump(mode="json", by_alias=True, exclude_none=True),
                "version": source.version, "at": self.now.isoformat()}, nonce=source.version))
            report.configured.append(address)
        else:
            report.unchanged.append(address)
        await _sync_schedules(self.client, agent, wanted, running, report)
        listed = json.dumps(wanted, sort_keys=True)
        if row is None or not _registered_as(row, source.version, source.file, listed):
            await self.tables.upsert(TABLE, {
                "PartitionKey": PARTITION, "RowKey": address, "version": source.version, "status": "active",
                "source": source.file, "schedules": listed, "updated": self.now})

    async def undeclared(self, agent_id: str, row: dict[str, Any]) -> None:
        """Retire an agent whose config is gone (unless only its file is broken)."""
        report, now = self.report, self.now
        if row.get("status") == "retired":
            return
        if row.get("status") == "refused":  # never ran: nothing to retire
            await self.tables.upsert(TABLE, {**{k: v for k, v in row.items() if k != "etag"}, "status": "retired",
                                             "updated": now})
            return
        if row.get("source") in self.broken_files:
            log.warning("agent '%s': its config file %s has errors; it keeps its last good config", agent_id, row["source"])
            report.kept_broken.append(agent_id)
            return
        report.commands.append(await _command(self.client, agent_id, "retire", {"reason": "its config was removed"},
                                              nonce=f"retire:{row.get('version')}"))
        for instance in json.loads(row.get("schedules") or "{}").values():
            await _stop(self.client, instance, "the agent was retired")
            report.schedules_stopped.append(instance)
        await self.tables.upsert(TABLE, {**{k: v for k, v in row.items() if k != "etag"}, "status": "retired",
                                         "schedules": "{}", "updated": now})
        report.retired.append(agent_id)


def _registered_as(row: dict[str, Any], version: str, file: str, listed_schedules: str) -> bool:
    """Whether the registry row already says: active, at ``version``, from ``file``, with these schedules."""
    return (row.get("status") == "active" and row.get("version") == version and row.get("source") == file
            and (row.get("schedules") or "{}") == listed_schedules)


async def _refuse(client: df.DurableOrchestrationClient, address: str, reason: str, version: str, file: str,
                  row: dict[str, Any] | None, tables: TableStore, now: datetime, actor: str,
                  report: SyncReport) -> None:
    """An agent over its namespace's agent quota: not registered (retired if it ran), audited once per version."""
    report.refused[address] = reason
    if row is not None and row.get("status") == "refused" and row.get("version") == version:
        return  # refused before, for this config: said and audited already
    log.warning("config sync: %s", reason)
    if row is not None and row.get("status") == "active":
        await _command(client, address, "retire", {"reason": reason}, nonce=f"quota:{version}")
        for instance in json.loads(row.get("schedules") or "{}").values():
            await _stop(client, instance, "the agent is over its namespace's agent quota")
            report.schedules_stopped.append(instance)
    try:  # the create-only marker makes overlapping syncs audit one refusal once
        await tables.insert(TABLE, {"PartitionKey": REFUSALS, "RowKey": f"{address}|{version}", "at": now})
    except AlreadyExists:
        pass
    else:
        await _audit_refusal(tables, address, reason, version, actor)
    await tables.upsert(TABLE, {"PartitionKey": PARTITION, "RowKey": address, "version": version,
                                "status": "refused", "reason": reason, "source": file, "schedules": "{}",
                                "updated": now})


async def _audit_refusal(tables: TableStore, address: str, reason: str, version: str, actor: str) -> None:
    try:
        await AuditLog(tables).append(address, QUOTA_REFUSED, actor=f"namespace:{namespace_of(address)}",
                                      subject="quota.agents", data={"rule": "quota.agents", "reason": reason,
                                                                    "version": version, "by": actor})
    except Exception as error:  # noqa: BLE001 - the registry row still says why; the next version audits again
        log.error("config sync: %s for %s not audited (%s)", QUOTA_REFUSED, address, type(error).__name__)


async def _sync_schedules(client: df.DurableOrchestrationClient, agent: AgentConfig, wanted: dict[str, str],
                          running: dict[str, str], report: SyncReport) -> None:
    for schedule in agent.schedules if agent.enabled else []:
        instance = wanted[schedule.name]
        if await start_once(client, schedules.ORCHESTRATOR, instance, schedules.schedule_input(agent, schedule),
                            restart_when=FINISHED):
            report.schedules_started.append(instance)
    for name, instance in running.items():
        if wanted.get(name) != instance:
            await _stop(client, instance, "its schedule changed or was removed")
            report.schedules_stopped.append(instance)


async def _stop(client: df.DurableOrchestrationClient, instance: str, reason: str) -> None:
    if runtime_status(await client.get_status(instance)) in ("Running", "Pending", "ContinuedAsNew"):
        await client.terminate(instance, reason)


async def _command(client: df.DurableOrchestrationClient, agent_id: str, operation: str, payload: dict[str, Any],
                   *, nonce: str) -> str:
    instance = ids.command_instance_id(agent_id, operation, nonce)
    await start_once(client, commands.ORCHESTRATOR, instance,
                     {"agent_id": agent_id, "operation": operation, "payload": payload},
                     restart_when=("Failed", "Terminated"))
    return instance
