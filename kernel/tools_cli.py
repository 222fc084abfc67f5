"""``aos mcp`` and ``aos approvals``: the MCP servers and human approvals of a running platform.

    aos mcp servers | aos mcp tools SERVER | aos mcp call SERVER TOOL --args JSON --as AGENT
    aos approvals [ID] | aos approve ID [--reason R] | aos decline ID --reason R
"""

from __future__ import annotations

import getpass
import json
from typing import Any
from urllib.parse import quote

import click

from kernel.platform_cli import _call, platform_options


@click.group("mcp")
def mcp() -> None:
    """The platform's MCP servers: health, tools, and tool calls as an agent."""


@mcp.command("servers")
@platform_options
def servers(url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Declared MCP servers with their health."""
    data = _call(url, key, state_dir, "GET", "mcp/servers")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    click.echo(f"{'SERVER':<14}{'TRANSPORT':<17}{'STATE':<15}{'TOOLS':>6}{'RESTARTS':>10}  LAST ERROR")
    for server in data["servers"]:
        health = server["health"]
        click.echo(f"{server['id']:<14}{server['transport']:<17}{health['state']:<15}{health.get('tool_count', 0):>6}"
                   f"{health.get('restarts', 0):>10}  {health.get('last_error') or ''}")


@mcp.command("tools")
@click.argument("server")
@platform_options
def tools(server: str, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """A server's tools (after its include/exclude filters)."""
    data = _call(url, key, state_dir, "GET", f"mcp/servers/{quote(server)}/tools")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    if not data["health"].get("available"):
        click.echo(f"{server} is {data['health'].get('state')}: {data['health'].get('last_error') or ''}")
    for tool in data["tools"]:
        required = set(tool["input_schema"].get("required") or [])
        params = ", ".join(f"{name}{'' if name in required else '?'}" for name in tool["input_schema"].get("properties") or {})
        click.echo(f"{tool['name']}({params})  {(tool.get('description') or '').splitlines()[0][:100] if tool.get('description') else ''}")


@mcp.command("call")
@click.argument("server")
@click.argument("tool")
@click.option("--args", "arguments", default="{}", show_default=True, help="The tool's arguments as a JSON object.")
@click.option("--as", "agent_id", required=True, help="The agent whose grants apply (the call is audited as it).")
@platform_options
def call(server: str, tool: str, arguments: str, agent_id: str, url: str | None, key: str | None, state_dir: str,
         as_json: bool) -> None:
    """Call a tool as an agent: refused unless the agent's config grants it."""
    try:
        parsed = json.loads(arguments)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not valid JSON: {error}", param_hint="--args") from None
    if not isinstance(parsed, dict):
        raise click.BadParameter("must be a JSON object", param_hint="--args")
    data = _call(url, key, state_dir, "POST", f"mcp/servers/{quote(server)}/tools/{quote(tool)}/call",
                 {"as": agent_id, "arguments": parsed})
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    result = data["result"]
    for item in result.get("content") or []:
        click.echo(item.get("text") if item.get("type") == "text" else json.dumps(item))
    if result.get("is_error"):
        raise click.ClickException(f"{server}.{tool} returned an error ({result.get('error') or 'tool error'})")


@click.command("approvals")
@click.argument("approval_id", required=False)
@platform_options
def approvals(approval_id: str | None, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Tool calls waiting for a human decision (or one approval, pending or decided)."""
    data = _call(url, key, state_dir, "GET", f"approvals/{quote(approval_id)}" if approval_id else "approvals")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    rows = [data] if approval_id else data["approvals"]
    for row in rows:
        click.echo(f"{row['id']}  {row['agent_id']}  {row['server']}.{row['tool']}  deadline {row['deadline'][:19]}"
                   f"  [{row['status']}]")
        click.echo(f"    arguments: {json.dumps(row['arguments'])[:300]}")
        if row.get("decision"):
            decision = row["decision"]
            click.echo(f"    {'approved' if decision['approved'] else 'declined'} by {decision['by']}"
                       + (f": {decision['reason']}" if decision.get("reason") else ""))
    if not rows:
        click.echo("no pending approvals")


def _answer(approve: bool) -> click.Command:
    verb = "approve" if approve else "decline"

    @click.command(verb, help=f"{verb.capitalize()} a pending tool call; the waiting turn goes on at once.")
    @click.argument("approval_id")
    @click.option("--reason", required=not approve, default=None, help="Why (kept in the audit log).")
    @click.option("--by", default=None, help="Who decides (default: your user name).")
    @platform_options
    def answer(approval_id: str, reason: str | None, by: str | None, url: str | None, key: str | None, state_dir: str,
               as_json: bool) -> None:
        body: dict[str, Any] = {"approve": approve, "by": by or getpass.getuser(), "reason": reason}
        data = _call(url, key, state_dir, "POST", f"approvals/{quote(approval_id)}", body)
        click.echo(json.dumps(data, indent=2) if as_json else
                   f"{verb}d {approval_id} ({data['server']}.{data['tool']} for {data['agent_id']})")

    return answer


approve = _answer(True)
decline = _answer(False)

COMMANDS = [mcp, approvals, approve, decline]
