"""Policies in effect for one agent, and the pure checks the enforcement points make with them.

An operator's ``policy`` documents select agents (``applies_to``); an agent selected by several
gets them combined, the most restrictive winning: the smallest of each limit, the intersection of
allow-lists, every quiet window of every policy, ``refuse`` over ``defer``. Each limit remembers
which policies set it, so a refusal always names them.

Everything here is a pure function of its arguments (quiet hours of a UTC datetime): the turn
orchestration runs it during replay, where it must come out the same every time. The I/O side
(usage, counters, audit) is :mod:`kernel.governance.policy_guard`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from kernel.config.models import OFFLINE_ENDPOINT, WEEKDAYS, PolicyConfig
from kernel.toolbus import error_result

__all__ = [
    "Bound",
    "EffectivePolicy",
    "QuietState",
    "QuietWindowSpec",
    "Refusal",
    "check_model",
    "check_tokens",
    "effective_policy",
    "quiet_state",
    "refused_result",
    "turn_limit",
    "turn_limit_refusal",
]

#: How far ahead quiet hours are followed when windows chain into each other (always-quiet is capped).
_QUIET_HORIZON = timedelta(days=8)


@dataclass(frozen=True)
class Bound:
    """A limit in effect and the policies that set it at that value."""

    value: int
    policies: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"value": self.value, "policies": list(self.policies)}


@dataclass(frozen=True)
class QuietWindowSpec:
    """One quiet window of one policy, in that policy's time zone."""

    policy: str
    timezone: str
    start: str
    end: str
    days: tuple[str, ...]
    action: str  # defer | refuse

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "timezone": self.timezone, "start": self.start, "end": self.end,
                "days": list(self.days), "action": self.action}

    def describe(self) -> str:
        days = "daily" if len(self.days) == 7 else ",".join(self.days)
        return f"{self.start}-{self.end} {self.timezone} {days}"

    def covering(self, moment: datetime) -> tuple[datetime, datetime] | None:
        """The UTC interval of this window's occurrence that contains ``moment``, if one does.

        Occurrences are laid out in local wall-clock time, so they follow daylight saving. A time
        that does not exist that day (a spring-forward gap) is read with the offset before the
        change, so 02:30 in a gap from 02:00 to 03:00 is 03:30; a time that happens twice (the
        repeated autumn hour) is its first occurrence (PEP 495 ``fold=0``)."""
        zone = ZoneInfo(self.timezone)
        local_day = moment.astimezone(zone).date()
        for day in (local_day - timedelta(days=1), local_day):
            if WEEKDAYS[day.weekday()] not in self.days:
                continue
            opens, closes = self._interval(day, zone)
            if opens <= moment < closes:
                return opens, closes
        return None

    def _interval(self, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
        start, end = _minutes(self.start), _minutes(self.end)
        return _utc(day, start, zone), _utc(day, end + (24 * 60 if end <= start else 0), zone)


@dataclass(frozen=True)
class EffectivePolicy:
    """The combination of every enabled policy that selects one agent (plain data: crosses activities)."""

    agent_id: str
    policies: tuple[str, ...] = ()
    tokens_per_day: Bound | None = None
    tool_calls_per_minute: Bound | None = None
    tool_calls_per_hour: Bound | None = None
    max_steps_per_turn: Bound | None = None
    max_tool_calls_per_turn: Bound | None = None
    endpoints: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (policy, allowed) per policy that lists them
    adapters: tuple[tuple[str, tuple[str, ...]], ...] = ()
    quiet_windows: tuple[QuietWindowSpec, ...] = field(default=())

    @property
    def empty(self) -> bool:
        return not self.policies

    def allowed_endpoints(self) -> list[str] | None:
        """The intersection of the endpoint allow-lists (``None``: no list, anything goes)."""
        return _intersection(self.endpoints)

    def allowed_adapters(self) -> list[str] | None:
        return _intersection(self.adapters)

    def to_dict(self) -> dict[str, Any]:
        def bound(value: Bound | None) -> dict[str, Any] | None:
            return value.to_dict() if value is not None else None

        return {
            "agent_id": self.agent_id, "policies": list(self.policies),
            "tokens_per_day": bound(self.tokens_per_day),
            "tool_calls_per_minute": bound(self.tool_calls_per_minute),
            "tool_calls_per_hour": bound(self.tool_calls_per_hour),
            "max_steps_per_turn": bound(self.max_steps_per_turn),
            "max_tool_calls_per_turn": bound(self.max_tool_calls_per_turn),
            "endpoints": [{"policy": p, "allowed": list(a)} for p, a in self.endpoints],
            "adapters": [{"policy": p, "allowed": list(a)} for p, a in self.adapters],
            "quiet_windows": [w.to_dict() for w in self.quiet_windows],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EffectivePolicy:
        def bound(value: Mapping[str, Any] | None) -> Bound | None:
            return Bound(int(value["value"]), tuple(value["policies"])) if value else None

        return cls(
            agent_id=str(data["agent_id"]), policies=tuple(data.get("policies") or ()),
            tokens_per_day=bound(data.get("tokens_per_day")),
            tool_calls_per_minute=bound(data.get("tool_calls_per_minute")),
            tool_calls_per_hour=bound(data.get("tool_calls_per_hour")),
            max_steps_per_turn=bound(data.get("max_steps_per_turn")),
            max_tool_calls_per_turn=bound(data.get("max_tool_calls_per_turn")),
            endpoints=tuple((e["policy"], tuple(e["allowed"])) for e in data.get("endpoints") or ()),
            adapters=tuple((e["policy"], tuple(e["allowed"])) for e in data.get("adapters") or ()),
            quiet_windows=tuple(QuietWindowSpec(w["policy"], w["timezone"], w["start"], w["end"], tuple(w["days"]),
                                                w["action"]) for w in data.get("quiet_windows") or ()),
        )


def effective_policy(policies: Iterable[PolicyConfig], agent_id: str) -> EffectivePolicy:
    """Every enabled policy selecting ``agent_id``, combined; the most restrictive wins."""
    chosen = sorted((p for p in policies if p.selects(agent_id)), key=lambda p: p.id)

    def smallest(values: Iterable[tuple[str, int | None]]) -> Bound | None:
        present = [(policy, value) for policy, value in values if value is not None]
        if not present:
            return None
        least = min(value for _, value in present)
        return Bound(least, tuple(policy for policy, value in present if value == least))

    windows = tuple(
        QuietWindowSpec(p.id, p.quiet_hours.timezone, w.start, w.end, tuple(w.days), p.quiet_hours.action)
        for p in chosen if p.quiet_hours is not None for w in p.quiet_hours.windows)
    return EffectivePolicy(
        agent_id=agent_id,
        policies=tuple(p.id for p in chosen),
        tokens_per_day=smallest((p.id, p.tokens_per_day) for p in chosen),
        tool_calls_per_minute=smallest((p.id, p.tool_calls.per_minute if p.tool_calls else None) for p in chosen),
        tool_calls_per_hour=smallest((p.id, p.tool_calls.per_hour if p.tool_calls else None) for p in chosen),
        max_steps_per_turn=smallest((p.id, p.max_steps_per_turn) for p in chosen),
        max_tool_calls_per_turn=smallest((p.id, p.max_tool_calls_per_turn) for p in chosen),
        endpoints=tuple((p.id, tuple(p.models.endpoints)) for p in chosen
                        if p.models is not None and p.models.endpoints is not None),
        adapters=tuple((p.id, tuple(p.models.adapters)) for p in chosen
                       if p.models is not None and p.models.adapters is not None),
        quiet_windows=windows,
    )


# ----------------------------------------------------------------------------------------------
# Refusals and the checks that make them
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """Why a policy stopped something: the rule, the policies behind it, the limit and what was seen."""

    rule: str
    policies: tuple[str, ...]
    reason: str
    limit: Any = None
    observed: Any = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def actor(self) -> str:
        """Who refused, for the audit record: ``policy:<id>`` (several ids comma-separated)."""
        return "policy:" + ",".join(self.policies)

    def to_dict(self) -> dict[str, Any]:
        return {"rule": self.rule, "policies": list(self.policies), "reason": self.reason, "limit": self.limit,
                "observed": self.observed, **dict(self.details)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Refusal:
        known = ("rule", "policies", "reason", "limit", "observed")
        return cls(str(data["rule"]), tuple(data["policies"]), str(data["reason"]), data.get("limit"),
                   data.get("observed"), {k: v for k, v in data.items() if k not in known})


def refused_result(refusal: Refusal) -> dict[str, Any]:
    """The tool result of a call a policy refused: an error the model reads, the refusal attached."""
    return {**error_result(f"refused by policy: {refusal.reason}", error="PolicyRefused"), "policy": refusal.to_dict()}


def check_model(policy: EffectivePolicy, endpoint: str, adapter: tuple[str, str] | None) -> Refusal | None:
    """Whether a model call may go to ``endpoint`` (an endpoint id, or ``offline``) with ``adapter``
    (name and declared version; ``None`` for the base model)."""
    against = [p for p, allowed in policy.endpoints if endpoint not in allowed]
    if against:
        where = "the offline provider" if endpoint == OFFLINE_ENDPOINT else f"inference endpoint '{endpoint}'"
        return Refusal("models.endpoints", tuple(against),
                       f"{_named(against)} {'does' if len(against) == 1 else 'do'} not allow model calls to {where} "
                       f"(allowed: {', '.join(policy.allowed_endpoints() or []) or 'none'})",
                       limit=policy.allowed_endpoints(), observed=endpoint)
    if adapter is not None:
        name, version = adapter
        against = [p for p, allowed in policy.adapters if name not in allowed and f"{name}@{version}" not in allowed]
        if against:
            return Refusal("models.adapters", tuple(against),
                           f"{_named(against)} {'does' if len(against) == 1 else 'do'} not allow adapter '{name}' "
                           f"(version {version}; allowed: {', '.join(policy.allowed_adapters() or []) or 'none'})",
                           limit=policy.allowed_adapters(), observed=f"{name}@{version}")
    return None


def check_tokens(policy: EffectivePolicy, used_today: int, day: date) -> Refusal | None:
    """Whether the agent's tokens of UTC ``day`` so far leave room for another model call."""
    bound = policy.tokens_per_day
    if bound is None or used_today < bound.value:
        return None
    return Refusal("tokens_per_day", bound.policies,
                   f"{_named(bound.policies)}: agent '{policy.agent_id}' has used {used_today} of its "
                   f"{bound.value} tokens for {day.isoformat()} (UTC); model calls resume tomorrow",
                   limit=bound.value, observed=used_today, details={"day": day.isoformat()})


def turn_limit(configured: int, bound: Bound | None) -> tuple[int, Bound | None]:
    """The per-turn limit in effect, and the policy bound when it is the policy that sets it."""
    if bound is not None and bound.value < configured:
        return bound.value, bound
    return configured, None


def turn_limit_refusal(rule: str, bound: Bound, observed: int, what: str) -> Refusal:
    """The refusal when a turn reaches a per-turn limit that a policy (not the agent's config) set."""
    noun = what[:-1] if bound.value == 1 and what.endswith("s") else what
    return Refusal(rule, bound.policies, f"{_named(bound.policies)} allows {bound.value} {noun} per turn",
                   limit=bound.value, observed=observed)


# ----------------------------------------------------------------------------------------------
# Quiet hours
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QuietState:
    """Whether ``now`` is in quiet hours, and if so until when and what to do."""

    quiet: bool
    action: str | None = None  # defer | refuse
    until: datetime | None = None  # the first moment (UTC) no window covers
    policies: tuple[str, ...] = ()
    windows: tuple[str, ...] = ()

    def refusal(self, now: datetime) -> Refusal:
        """The refusal (or deferral) this state means, for the turn record and the audit log."""
        until = self.until.isoformat() if self.until else None
        if self.action == "refuse":
            reason = f"{_named(self.policies)}: quiet hours ({'; '.join(self.windows)}) until {until}; not started"
        else:
            reason = f"{_named(self.policies)}: quiet hours ({'; '.join(self.windows)}); deferred until {until}"
        return Refusal("quiet_hours", self.policies, reason, limit=list(self.windows), observed=now.isoformat(),
                       details={"action": self.action, "until": until})


def quiet_state(policy: EffectivePolicy, now: datetime) -> QuietState:
    """The quiet hours at UTC instant ``now``: windows chaining into each other are followed to
    the end of the last (up to eight days), and ``refuse`` wins over ``defer``."""
    if now.tzinfo is None:
        raise ValueError("quiet_state needs a timezone-aware datetime (UTC)")
    now = now.astimezone(timezone.utc)
    covering = _covering(policy.quiet_windows, now)
    if not covering:
        return QuietState(False)
    hit = dict(covering)
    until = max(end for _, end in covering)
    horizon = now + _QUIET_HORIZON
    while until < horizon:
        more = _covering(policy.quiet_windows, until)
        if not more:
            break
        hit.update(more)
        until = max(end for _, end in more)
    until = min(until, horizon)
    action = "refuse" if any(w.action == "refuse" for w, _ in covering) else "defer"
    deciding = [w for w, _ in covering if w.action == action]
    policies = tuple(sorted({w.policy for w in deciding}))
    return QuietState(True, action, until, policies, tuple(dict.fromkeys(w.describe() for w in hit)))


def _covering(windows: Iterable[QuietWindowSpec], moment: datetime) -> list[tuple[QuietWindowSpec, datetime]]:
    found = []
    for window in windows:
        interval = window.covering(moment)
        if interval is not None:
            found.append((window, interval[1]))
    return found


def _minutes(text: str) -> int:
    """``HH:MM`` as minutes after midnight (``24:00`` is 1440)."""
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def _utc(day: date, minutes: int, zone: ZoneInfo) -> datetime:
    """Local wall-clock time ``minutes`` after the midnight starting ``day`` in ``zone``, as UTC."""
    day = day + timedelta(days=minutes // (24 * 60))
    minutes %= 24 * 60
    return datetime.combine(day, time(minutes // 60, minutes % 60), tzinfo=zone).astimezone(timezone.utc)


def _intersection(lists: tuple[tuple[str, tuple[str, ...]], ...]) -> list[str] | None:
    if not lists:
        return None
    common = set(lists[0][1])
    for _, allowed in lists[1:]:
        common &= set(allowed)
    return sorted(common)


def _named(policies: Iterable[str]) -> str:
    ids = list(policies)
    return ("policy " if len(ids) == 1 else "policies ") + ", ".join(f"'{p}'" for p in ids)
