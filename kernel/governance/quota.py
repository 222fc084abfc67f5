"""Namespace quotas: what one tenant's agents may use together, enforced where it is used.

A ``kind: namespace`` document may set three quotas (``kernel.config.models.NamespaceQuotas``):

* ``agents``: the config sync (``realm_of_agents.registration``) registers at most this many of
  the namespace's agents. Agents already registered keep their place; new ones are admitted in
  address order while there is room, and the rest are refused (:func:`admit_agents`, pure);
* ``turns_per_minute``: counted when a turn begins, per UTC clock minute, in table ``quotas``
  through the same ETag-guarded counters as the policies' tool-call limits
  (:class:`~kernel.governance.ratelimit.ToolCallLimiter`, PartitionKey ``namespace:<name>``), so
  instances never over-admit; the turn id is the ticket, so a turn whose policy activity runs
  again is not counted twice; a turn beyond it ends as ``refused``;
* ``tokens_per_day``: checked before each model call against the tokens every agent of the
  namespace counted today (table ``usage``), like a policy's per-agent budget: the call that
  crosses it completes, the next is refused.

Every refusal is ``quota.refused`` on the agent's audit chain, actor ``namespace:<name>``, and on
the turn record (``refusals``, a ``policy``-kind step with a ``quota.*`` rule).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Protocol

from kernel import namespaces as ns
from kernel.config.loader import ConfigSet
from kernel.governance.policy import Refusal
from kernel.governance.ratelimit import ToolCallLimiter, Window
from kernel.inference.usage import UsageLedger
from kernel.ports import TableStore

__all__ = ["QUOTA_REFUSED", "TABLE", "AgentAdmission", "QuotaGuard", "admit_agents"]

QUOTA_REFUSED = "quota.refused"
TABLE = "quotas"
AUDIT_ATTEMPTS = 3
log = logging.getLogger("aos.governance.quota")


class AuditSink(Protocol):
    async def append(self, chain: str, kind: str, *, actor: str, data: Mapping[str, Any],
                     subject: str | None = None) -> Any: ...


@dataclass(frozen=True)
class AgentAdmission:
    """Which declared agents the namespaces' agent quotas admit, and why the others are refused."""

    admitted: frozenset[str]
    refused: Mapping[str, str]


def admit_agents(configs: ConfigSet, registered: Iterable[str]) -> AgentAdmission:
    """Apply every namespace's ``quotas.agents`` to the declared agents (by address). Agents in
    ``registered`` (active in the registry) keep their places first, so adding an agent never
    pushes out one that runs; the rest are admitted in address order while there is room."""
    already = set(registered)
    admitted: set[str] = set()
    refused: dict[str, str] = {}
    by_namespace: dict[str, list[str]] = {}
    for address in configs.agents:
        by_namespace.setdefault(ns.namespace_of(address), []).append(address)
    for namespace, addresses in by_namespace.items():
        document = configs.namespaces.get(namespace)
        quota = document.quotas.agents if document is not None else None
        ordered = sorted(addresses, key=lambda a: (a not in already, a))
        if quota is None:
            admitted.update(ordered)
            continue
        admitted.update(ordered[:quota])
        for address in ordered[quota:]:
            refused[address] = (f"namespace '{namespace}' allows {quota} agent{'' if quota == 1 else 's'} "
                                f"(quotas.agents) and {len(addresses)} are declared: agent '{address}' is not "
                                "registered")
    return AgentAdmission(frozenset(admitted), refused)


class QuotaGuard:
    """The run-time quota checks (turns, tokens), with the configs read fresh at every check."""

    def __init__(self, tables: TableStore, configs: Callable[[], ConfigSet], audit: AuditSink | None, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._configs = configs
        self._audit = audit
        self._usage = UsageLedger(tables)
        self._turns = ToolCallLimiter(tables, table=TABLE, counter="turns")
        self._clock = clock or (lambda: datetime.now(UTC))

    def _quotas(self, agent_id: str) -> tuple[str, Any]:
        namespace = ns.namespace_of(agent_id)
        document = self._configs().namespaces.get(namespace)
        return namespace, document.quotas if document is not None else None

    async def admit_turn(self, agent_id: str, *, turn_id: str | None) -> Refusal | None:
        """Count a beginning turn against its namespace's ``turns_per_minute``, or refuse it (audited).
        A turn counted before (its policy activity ran again) is not counted again."""
        namespace, quotas = self._quotas(agent_id)
        if quotas is None or quotas.turns_per_minute is None:
            return None
        window = Window("minute", quotas.turns_per_minute, (f"namespace:{namespace}",))
        admission = await self._turns.admit(f"namespace:{namespace}", [window], now=self._clock(),
                                            ticket=turn_id)
        if admission.admitted:
            return None
        resets = admission.resets_at.isoformat() if admission.resets_at else None
        refusal = Refusal(
            "quota.turns_per_minute", (), f"namespace '{namespace}' quota: its agents have begun {admission.observed} "
            f"turns this minute (limit {quotas.turns_per_minute} per minute); the turn was not started; the next "
            f"minute starts at {resets}", limit=quotas.turns_per_minute, observed=admission.observed,
            details={"namespace": namespace, "window": "minute", "resets_at": resets})
        await self.record(agent_id, refusal, turn_id=turn_id)
        return refusal

    async def tokens_used(self, namespace: str, day: date) -> int:
        """Prompt plus completion tokens every declared agent of ``namespace`` counted on UTC ``day``."""
        agents = [a for a in self._configs().agents if ns.namespace_of(a) == namespace]
        totals = await asyncio.gather(*(self._usage.rows(agent, day, day) for agent in agents))
        return sum(int(row.get("prompt_tokens") or 0) + int(row.get("completion_tokens") or 0)
                   for rows in totals for row in rows)

    async def check_tokens(self, agent_id: str, *, turn_id: str | None, call: str) -> Refusal | None:
        """Refuse a model call once the namespace's tokens of the UTC day have reached ``tokens_per_day`` (audited)."""
        namespace, quotas = self._quotas(agent_id)
        if quotas is None or quotas.tokens_per_day is None:
            return None
        today = self._clock().astimezone(UTC).date()
        used = await self.tokens_used(namespace, today)
        if used < quotas.tokens_per_day:
            return None
        refusal = Refusal(
            "quota.tokens_per_day", (), f"namespace '{namespace}' quota: its agents have used {used} of "
            f"{quotas.tokens_per_day} tokens for {today.isoformat()} (UTC); model calls resume tomorrow",
            limit=quotas.tokens_per_day, observed=used,
            details={"namespace": namespace, "day": today.isoformat(), "call": call})
        await self.record(agent_id, refusal, turn_id=turn_id)
        return refusal

    async def record(self, agent_id: str, refusal: Refusal, *, turn_id: str | None) -> None:
        """``quota.refused`` on the agent's audit chain (retried; an outage is logged, the refusal stands)."""
        if self._audit is None:
            return
        namespace = ns.namespace_of(agent_id)
        for attempt in range(AUDIT_ATTEMPTS):
            try:
                await self._audit.append(agent_id, QUOTA_REFUSED, actor=f"namespace:{namespace}",
                                         data={**refusal.to_dict(), "turn_id": turn_id}, subject=refusal.rule)
                return
            except Exception as error:  # noqa: BLE001 - storage errors of any adapter
                if attempt == AUDIT_ATTEMPTS - 1:
                    log.error("audit record %s (%s) for agent %s could not be written: %s", QUOTA_REFUSED,
                              refusal.rule, agent_id, type(error).__name__)
                    return
                await asyncio.sleep(0.2 * 2 ** attempt)
