"""Policy enforcement at the point of use: the I/O side of :mod:`kernel.governance.policy`.

The realm's model and context-tool activities and the MCP gateway each hold a ``PolicyGuard``.
It reads the current configs at every check (a changed policy applies to the next call), the
day's token usage from the usage table, the tool-call counters through
:class:`~kernel.governance.ratelimit.ToolCallLimiter`, and writes every refusal to the agent's
audit chain (``policy.refused``, actor ``policy:<id>``) with the rule, the limit, the value seen
and the turn — never tool arguments. The agent's namespace quotas (``kernel.governance.quota``)
are checked at the same points: tokens before each model call, turns when a turn begins.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from datetime import date, datetime, timezone
from typing import Any, Protocol

from kernel.config.loader import ConfigSet
from kernel.governance.policy import (
    EffectivePolicy,
    Refusal,
    check_model,
    check_tokens,
    effective_policy,
    refused_result,
)
from kernel.governance.quota import QuotaGuard
from kernel.governance.ratelimit import ToolCallLimiter, Window
from kernel.inference.usage import UsageLedger
from kernel.ports import TableStore

__all__ = ["REFUSED", "DEFERRED", "PolicyGuard", "refused_result"]

REFUSED = "policy.refused"
DEFERRED = "policy.deferred"
AUDIT_ATTEMPTS = 3
log = logging.getLogger("aos.governance.policy")


class AuditSink(Protocol):
    async def append(self, chain: str, kind: str, *, actor: str, data: Mapping[str, Any],
                     subject: str | None = None) -> Any: ...


class PolicyGuard:
    """The checks each enforcement point makes, with the configs read fresh at every check."""

    def __init__(self, tables: TableStore, configs: Callable[[], ConfigSet], audit: AuditSink | None, *,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._configs = configs
        self._audit = audit
        self._usage = UsageLedger(tables)
        self._limiter = ToolCallLimiter(tables)
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self.quota = QuotaGuard(tables, configs, audit, clock=self._clock)

    def effective(self, agent_id: str) -> EffectivePolicy:
        """The agent's policy now, from the current configs."""
        return effective_policy(self._configs().policies.values(), agent_id)

    async def tokens_used(self, agent_id: str, day: date) -> int:
        """Prompt plus completion tokens the agent's model calls counted on UTC ``day``."""
        rows = await self._usage.rows(agent_id, day, day)
        return sum(int(row.get("prompt_tokens") or 0) + int(row.get("completion_tokens") or 0) for row in rows)

    async def check_model_call(self, agent_id: str, *, endpoint: str, adapter: tuple[str, str] | None,
                               turn_id: str | None, call: str) -> Refusal | None:
        """Refuse a model call to ``endpoint`` (an id, or ``offline``) with ``adapter`` (name, version)
        when the allow-lists forbid it or the day's tokens are spent; audited. ``call`` says which
        call it is (``turn``, ``purpose``, ``summary``)."""
        policy = self.effective(agent_id)
        if policy.empty:
            return await self.quota.check_tokens(agent_id, turn_id=turn_id, call=call)
        refusal = check_model(policy, endpoint, adapter)
        if refusal is None and policy.tokens_per_day is not None:
            today = self._clock().astimezone(timezone.utc).date()
            refusal = check_tokens(policy, await self.tokens_used(agent_id, today), today)
        if refusal is not None:
            refusal = Refusal(refusal.rule, refusal.policies, refusal.reason, refusal.limit, refusal.observed,
                              {**refusal.details, "call": call})
            await self.record(agent_id, refusal, turn_id=turn_id)
            return refusal
        return await self.quota.check_tokens(agent_id, turn_id=turn_id, call=call)

    async def admit_turn(self, agent_id: str, *, turn_id: str | None) -> Refusal | None:
        """Count a beginning turn against the namespace's turns-per-minute quota, or refuse it (audited)."""
        return await self.quota.admit_turn(agent_id, turn_id=turn_id)

    async def admit_tool_call(self, agent_id: str, *, server: str, tool: str, turn_id: str | None,
                              call_id: str | None) -> Refusal | None:
        """Count one tool call against the agent's rate limits, or refuse it (audited)."""
        policy = self.effective(agent_id)
        windows = [Window(name, bound.value, bound.policies) for name, bound in
                   (("minute", policy.tool_calls_per_minute), ("hour", policy.tool_calls_per_hour))
                   if bound is not None]
        if not windows:
            return None
        now = self._clock()
        admission = await self._limiter.admit(agent_id, windows, now=now)
        if admission.admitted or admission.window is None:
            return None
        window = admission.window
        resets = admission.resets_at.isoformat() if admission.resets_at else None
        names = ", ".join(f"'{p}'" for p in window.policies)
        refusal = Refusal(
            f"tool_calls.per_{window.name}", window.policies,
            f"polic{'y' if len(window.policies) == 1 else 'ies'} {names}: agent '{agent_id}' has made "
            f"{admission.observed} tool call{'' if admission.observed == 1 else 's'} this {window.name} "
            f"(limit {window.limit} per {window.name}); "
            f"the call {server}.{tool} was not run; the next {window.name} starts at {resets}",
            limit=window.limit, observed=admission.observed,
            details={"window": window.name, "resets_at": resets, "server": server, "tool": tool,
                     "call_id": call_id})
        await self.record(agent_id, refusal, turn_id=turn_id, subject=f"{server}.{tool}")
        return refusal

    async def record(self, agent_id: str, refusal: Refusal, *, turn_id: str | None, kind: str = REFUSED,
                     subject: str | None = None) -> None:
        """Append the refusal (or deferral) to the agent's audit chain, retried a few times; a record
        that still cannot be written is logged and the refusal stands (it is on the turn too)."""
        if self._audit is None:
            return
        data = {**refusal.to_dict(), "turn_id": turn_id}
        for attempt in range(AUDIT_ATTEMPTS):
            try:
                await self._audit.append(agent_id, kind, actor=refusal.actor, data=data,
                                         subject=subject or refusal.rule)
                return
            except Exception as error:  # noqa: BLE001 - storage errors of any adapter
                if attempt == AUDIT_ATTEMPTS - 1:
                    log.error("audit record %s (%s) for agent %s, turn %s could not be written: %s", kind,
                              refusal.rule, agent_id, turn_id, type(error).__name__)
                    return
                await asyncio.sleep(0.2 * 2 ** attempt)
