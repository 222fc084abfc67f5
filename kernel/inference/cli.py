"""``aos usage``: model tokens per agent and adapter, from a running platform (``GET /api/usage``).

    aos usage [AGENT ...] [--days 30] [--json]
"""

from __future__ import annotations

import json
from urllib.parse import quote

import click

from kernel.platform_cli import _call, platform_options


@click.command("usage")
@click.argument("agents", nargs=-1)
@click.option("--days", default=30, show_default=True, type=click.IntRange(1, 366), help="Days back, today included.")
@platform_options
def usage(agents: tuple[str, ...], days: int, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Model calls and tokens per agent and adapter; cached answers and base-model fallbacks."""
    query = f"usage?days={days}" + (f"&agent={quote(','.join(agents))}" if agents else "")
    data = _call(url, key, state_dir, "GET", query)
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    click.echo(f"Model usage {data['since']} .. {data['until']} (offline rows count words, not tokens)")
    click.echo(f"{'AGENT':<14}{'ENDPOINT':<14}{'ADAPTER':<16}{'CALLS':>7}{'PROMPT':>10}{'COMPLETION':>12}"
               f"{'CACHED':>8}{'SAVED':>9}{'FALLBACKS':>11}")
    for agent_id, entry in data["agents"].items():
        for route, n in sorted(entry["by_route"].items()):
            endpoint, _, adapter = route.partition("/")
            click.echo(f"{agent_id:<14}{endpoint:<14}{adapter:<16}{_counts(n)}")
        for adapter, reason in (entry.get("last_fallback") or {}).items():
            click.echo(f"  {agent_id}/{adapter} fell back to the base model: {reason}")
    click.echo(f"{'total':<44}{_counts(data['total'])}")


def _counts(n: dict[str, int]) -> str:
    saved = n["saved_prompt_tokens"] + n["saved_completion_tokens"]
    return (f"{n['calls']:>7}{n['prompt_tokens']:>10}{n['completion_tokens']:>12}{n['cache_hits']:>8}{saved:>9}"
            f"{n['fallbacks']:>11}")

COMMANDS = [usage]
