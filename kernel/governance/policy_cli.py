"""``aos policies``: the policies in effect per agent, and today's token usage against them.

    aos policies [PATHS ...] [--agent ID] [--json] [--no-usage]

The effective policy is computed from the config files (as ``aos validate`` reads them); today's
tokens come from the running platform (``GET /api/usage``) when it can be reached.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import click

from kernel.config.loader import load_configs
from kernel.governance.policy import Bound, EffectivePolicy, effective_policy, quiet_state, turn_limit
from kernel.platform_cli import _call, platform_options

DEFAULT_CONFIG_PATHS = ("agent_configs", "mcp_configs")


@click.command("policies")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--agent", "agent_ids", multiple=True, help="Only this agent (repeat for more).")
@click.option("--no-usage", is_flag=True, help="Do not ask the running platform for today's usage.")
@platform_options
def policies(paths: tuple[str, ...], agent_ids: tuple[str, ...], no_usage: bool, url: str | None, key: str | None,
             state_dir: str, as_json: bool) -> None:
    """The policies in effect for each agent (most restrictive wins) and today's tokens against the budget."""
    configs = load_configs(paths or DEFAULT_CONFIG_PATHS)
    for problem in configs.errors:
        click.echo(problem.render(), err=True)
    chosen = list(agent_ids) or sorted(configs.agents)
    unknown = [agent_id for agent_id in chosen if agent_id not in configs.agents]
    if unknown:
        raise click.ClickException(f"no agent {', '.join(repr(a) for a in unknown)} is declared in the configs "
                                   f"(declared: {', '.join(sorted(configs.agents)) or 'none'})")
    now = datetime.now(timezone.utc)
    usage, usage_note = ({}, "not asked (--no-usage)") if no_usage else _usage(url, key, state_dir, chosen)
    report = []
    for agent_id in chosen:
        effective = effective_policy(configs.policies.values(), agent_id)
        model = configs.agents[agent_id].model
        quiet = quiet_state(effective, now)
        report.append({
            **effective.to_dict(),
            "agent_max_steps": model.max_steps, "agent_max_tool_calls": model.max_tool_calls,
            "quiet_now": {"quiet": quiet.quiet, "action": quiet.action,
                          "until": quiet.until.isoformat() if quiet.until else None, "policies": list(quiet.policies)},
            "tokens_today": usage.get(agent_id),
        })
    if as_json:
        click.echo(json.dumps({"agents": report, "usage": usage_note or "ok", "day": now.date().isoformat()}, indent=2))
        return
    for entry in report:
        click.echo(_render(EffectivePolicy.from_dict(entry), entry))
    if usage_note:
        click.echo(f"today's usage: {usage_note}")


def _usage(url: str | None, key: str | None, state_dir: str, agent_ids: list[str]) -> tuple[dict[str, int], str]:
    """Today's prompt + completion tokens per agent from the running platform, or why there are none."""
    try:
        data = _call(url, key, state_dir, "GET", f"usage?days=1&agent={quote(','.join(agent_ids))}")
    except click.ClickException as error:
        return {}, f"not available ({error.message})"
    totals = {agent_id: entry["total"] for agent_id, entry in (data.get("agents") or {}).items()}
    return {agent_id: int(totals.get(agent_id, {}).get("prompt_tokens", 0))
            + int(totals.get(agent_id, {}).get("completion_tokens", 0)) for agent_id in agent_ids}, ""


def _render(effective: EffectivePolicy, entry: dict[str, Any]) -> str:
    lines = [f"{effective.agent_id}: " + (", ".join(effective.policies) if effective.policies else "no policy")]

    def bound(label: str, value: Bound | None, tail: str = "") -> None:
        if value is not None:
            lines.append(f"  {label:<24}{value.value} ({', '.join(value.policies)}){tail}")

    used = entry.get("tokens_today")
    if effective.tokens_per_day is not None:
        share = f"; used today {used} ({used / effective.tokens_per_day.value:.1%})" if used is not None else ""
        bound("tokens per day", effective.tokens_per_day, share)
    elif used is not None:
        lines.append(f"  {'tokens per day':<24}no limit; used today {used}")
    bound("tool calls per minute", effective.tool_calls_per_minute)
    bound("tool calls per hour", effective.tool_calls_per_hour)
    for label, own, limit in (("max steps per turn", entry["agent_max_steps"], effective.max_steps_per_turn),
                              ("max tool calls per turn", entry["agent_max_tool_calls"],
                               effective.max_tool_calls_per_turn)):
        value, binding = turn_limit(own, limit)
        source = ", ".join(binding.policies) if binding else "the agent's config"
        lines.append(f"  {label:<24}{value} ({source})")
    for label, lists, allowed in (("endpoints", effective.endpoints, effective.allowed_endpoints()),
                                  ("adapters", effective.adapters, effective.allowed_adapters())):
        if allowed is not None:
            lines.append(f"  {label:<24}{', '.join(allowed) or 'none'} ({', '.join(p for p, _ in lists)})")
    for window in effective.quiet_windows:
        lines.append(f"  {'quiet hours':<24}{window.describe()}, {window.action} ({window.policy})")
    quiet = entry["quiet_now"]
    if quiet["quiet"]:
        lines.append(f"  {'now':<24}quiet until {quiet['until']}: turns {quiet['action']} "
                     f"({', '.join(quiet['policies'])})")
    return "\n".join(lines)


COMMANDS = [policies]
