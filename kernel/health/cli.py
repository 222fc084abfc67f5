"""``aos health``: the readiness report of a running platform (``GET /api/health/details``).

    aos health [--timeout 5] [--strict] [--json] [--url URL] [--key KEY | --token TOKEN]

Exits 0 when the platform is ready (``ok``, or ``degraded`` unless ``--strict``), 1 when it is
not or cannot be reached, so scripts and deployment gates can wait on it.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from kernel.health.report import DEGRADED, FAILED
from kernel.platform_cli import _call, platform_options


@click.command("health")
@click.option("--timeout", default=5.0, show_default=True, type=click.FloatRange(0.1, 30),
              help="Seconds each check may take.")
@click.option("--strict", is_flag=True, help="Exit 1 when degraded too (a model endpoint or MCP server is failing).")
@platform_options
def health(timeout: float, strict: bool, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Check every dependency of a running platform: storage, bus, model endpoints, MCP servers."""
    report = _call(url, key, state_dir, "GET", f"health/details?timeout={timeout:g}")
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        click.echo(render(report))
    status = report.get("status")
    sys.exit(1 if status == FAILED or (strict and status == DEGRADED) else 0)


def render(report: dict[str, Any]) -> str:
    """The report as lines: the verdict, then one line per check with its message when it is not ok."""
    roles = ", ".join(report.get("roles") or [])
    lines = [f"{report['status'].upper()}  (roles: {roles}; checked at {report.get('checked_at')})"]
    for check in report["checks"]:
        required = "required" if check["required"] else "optional"
        line = f"  {check['status']:<9}{check['name']:<28}{check['latency_ms']:>8.1f} ms  {required}"
        if check["status"] != "ok":
            line += f"  {check.get('error') or ''}: {check.get('message') or ''}".rstrip(": ")
        elif check.get("detail", {}).get("offline"):
            line += "  [offline] no model is called"
        lines.append(line)
    return "\n".join(lines)


COMMANDS = [health]
