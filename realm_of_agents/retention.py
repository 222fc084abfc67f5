"""History retention: finished turns, commands and schedules leave the task hub after
``AOS_HISTORY_RETENTION_DAYS``.

Every event an agent takes starts a turn, an orchestration whose Durable history (about 15 to
30 KB for a turn without tools) stays in the task hub after it finishes. For a perpetual agent
that is storage growing without bound: the engine's SQLite file locally, the task hub's tables
and blobs in Azure. What a finished turn leaves that matters is kept elsewhere: the agent's state
(its entity), the turn's archive record and the audit chain. Its history still matters while it
runs, to the wake (a redelivered message whose turn exists starts nothing) and for inspection.

So an hourly timer purges the realm's finished instances (ids ``turn-``, ``command-``,
``schedule-``; Completed, Failed or Terminated) created more than the retention ago. Only the
realm's own, found by id prefix and purged one by one: a task hub shared with the kernel role
(one app serving every role, as locally) keeps its workflow runs, whose history is their record.
The query is repeated until it finds nothing, since a backend may answer it a page at a time.

A message re-sent with the id of an event whose turn was purged starts a new turn: keep the
retention longer than any publisher may re-send an id (Service Bus detects duplicates for at most
7 days, the default retention).

The same timer sweeps the realm's tables that would otherwise only grow (``sweep_tables``):
response cache entries past their expiry (always: an expired entry is never used) and approvals
whose deadline is older than the retention (when it is on).
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Mapping

import azure.durable_functions as df
from azure.durable_functions.models.OrchestrationRuntimeStatus import OrchestrationRuntimeStatus as Status

from kernel import settings
from kernel.inference.cache import ResponseCache
from kernel.instances import FINISHED as FINISHED_NAMES
from kernel.ports import TableStore
from kernel.sweep import SweepReport
from realm_of_agents import ids
from realm_of_agents.approvals import ApprovalStore

log = logging.getLogger("aos.realm.retention")
SETTING = "AOS_HISTORY_RETENTION_DAYS"
PREFIXES = (ids.TURN_PREFIX, ids.COMMAND_PREFIX, ids.SCHEDULE_PREFIX)
FINISHED = [Status(name) for name in FINISHED_NAMES]
#: Purges in flight at once (each is a call to the Durable API).
CONCURRENT = 16
#: Instances one run purges at most; the rest wait for the next hour, so one run stays short.
MAX_PER_RUN = 50_000


def retention(environ: Mapping[str, str] | None = None) -> timedelta | None:
    """The setting as a duration, or ``None`` for 0 (keep every history); anything else that is not
    a non-negative number of days is an error naming the setting."""
    raw = settings.get(SETTING, environ).strip()
    try:
        days = float(raw)
    except ValueError:
        days = math.nan
    if not math.isfinite(days) or days < 0:
        raise ValueError(f"app setting {SETTING} must be a number of days, 0 to keep every history; got {raw!r}")
    return None if days == 0 else timedelta(days=days)


@dataclass
class RetentionReport:
    cutoff: datetime
    purged: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    #: the run stopped at ``MAX_PER_RUN``: more is left for the next one
    more: bool = False

    @property
    def total(self) -> int:
        return sum(self.purged.values())


async def purge_finished(client: df.DurableOrchestrationClient, cutoff: datetime, *,
                         limit: int = MAX_PER_RUN) -> RetentionReport:
    """Purge the realm's finished instances created before ``cutoff``, at most ``limit`` of them."""
    report = RetentionReport(cutoff)
    budget = limit
    for prefix in PREFIXES:
        report.purged[prefix] = 0
        while budget > 0:
            found = await client.get_status_by(created_time_to=cutoff, runtime_status=FINISHED,
                                               instance_id_prefix=prefix)
            batch = [s.instance_id for s in found if s.instance_id and s.instance_id.startswith(prefix)][:budget]
            if not batch:
                break
            purged = await _purge(client, batch, report)
            report.purged[prefix] += purged
            budget -= len(batch)
            if purged == 0:  # every one refused (restarted since the query): leave them for the next run
                break
    report.more = budget <= 0
    return report


async def _purge(client: df.DurableOrchestrationClient, batch: list[str], report: RetentionReport) -> int:
    purged = 0
    for start in range(0, len(batch), CONCURRENT):
        chunk = batch[start:start + CONCURRENT]
        results = await asyncio.gather(*(client.purge_instance_history(i) for i in chunk), return_exceptions=True)
        for instance_id, result in zip(chunk, results, strict=True):
            if isinstance(result, BaseException):
                report.failed += 1
                log.warning("retention: %s not purged (%s: %s)", instance_id, type(result).__name__, str(result)[:200])
            else:
                purged += result.instances_deleted
        await asyncio.sleep(0)  # in process, each purge runs on the engine's loop: let other work in between
    return purged


async def run(client: df.DurableOrchestrationClient, *, now: datetime | None = None,
              environ: Mapping[str, str] | None = None) -> RetentionReport | None:
    """The timer's work: purge what the setting says is past keeping (nothing when it is 0)."""
    kept = retention(environ)
    if kept is None:
        return None
    report = await purge_finished(client, (now or datetime.now(timezone.utc)) - kept)
    if report.total or report.failed:
        log.info("retention: purged %d finished instances created before %s (%s)%s%s", report.total,
                 report.cutoff.isoformat(), ", ".join(f"{p}*: {n}" for p, n in report.purged.items()),
                 f"; {report.failed} failed" if report.failed else "", "; more left for the next run" if report.more else "")
    return report


async def sweep_tables(tables: TableStore, *, now: datetime | None = None,
                       environ: Mapping[str, str] | None = None) -> list[SweepReport]:
    """Delete expired response cache entries, and approvals whose deadline is older than the
    retention (none when it is 0)."""
    now = now or datetime.now(timezone.utc)
    kept = retention(environ)
    reports = [await ResponseCache(tables).sweep(now)]
    if kept is not None:
        reports.append(await ApprovalStore(tables).sweep(now - kept))
    return reports
