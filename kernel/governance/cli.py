"""``aos audit``: read, follow and verify a running platform's audit log.

    aos audit verify [--agent ID] | aos audit show ID [--after SEQ] | aos audit tail [--agent ID]
    aos audit anchor
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import quote

import click

from kernel.platform_cli import _call, platform_options


@click.group("audit")
def audit() -> None:
    """The tamper-evident audit log: every tool call, refusal, approval and admin action."""


@audit.command("verify")
@click.option("--agent", "chain", default=None, help="Verify one agent's chain (default: every chain).")
@platform_options
def verify(chain: str | None, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Recompute the hash chains; exit 1 and name the first broken record of each broken chain."""
    path = "audit/verify" + (f"?chain={quote(chain)}" if chain else "")
    report = _call(url, key, state_dir, "GET", path)
    if as_json:
        click.echo(json.dumps(report, indent=2))
    else:
        for entry in report["chains"]:
            broken = entry.get("broken")
            status = "ok" if entry["ok"] else f"BROKEN at seq {broken['seq']}: {broken['problem']} ({broken['detail']})"
            click.echo(f"{entry['chain']:<24} {entry['records']:>7} record(s)  {status}")
        anchors = report.get("anchors") or {}
        if anchors.get("anchored"):
            click.echo(f"{'anchors':<24} {anchors['chains_checked']:>7} chain(s)   "
                       f"latest anchor #{anchors['anchor_seq']} at {(anchors.get('time') or '?')[:19]}")
        else:
            click.echo(f"{'anchors':<24} none yet (the kernel anchors every 5 minutes; `aos audit anchor` now)")
        for problem in anchors.get("problems") or []:
            click.echo(f"{problem['chain']:<24} BROKEN at seq {problem['seq']}: {problem['detail']}")
        click.echo(f"{'verified' if report['ok'] else 'NOT verified'}: {report['records']} record(s) in "
                   f"{len(report['chains'])} chain(s)")
    if not report["ok"]:
        raise SystemExit(1)


@audit.command("anchor")
@platform_options
def anchor(url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Anchor every chain's head now, so cutting a chain short from here on is caught."""
    result = _call(url, key, state_dir, "POST", "audit/anchor")
    if as_json:
        return click.echo(json.dumps(result, indent=2))
    done = result.get("anchored")
    click.echo(f"anchored {done['chains']} chain(s) as anchors#{done['seq']} ({done['blob']})" if done
               else "nothing new to anchor since the latest anchor")


def _render(record: dict[str, Any]) -> str:
    data = json.dumps(record.get("data"), sort_keys=True)
    return (f"{record['time'][:19]}  {record['chain']}#{record['seq']:<5} {record['kind']:<20} "
            f"{record['actor']:<12} {record.get('subject') or '-'}  {data[:160]}")


@audit.command("show")
@click.argument("chain")
@click.option("--after", default=0, show_default=True, help="Only records after this sequence number.")
@click.option("--limit", default=200, show_default=True)
@platform_options
def show(chain: str, after: int, limit: int, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """One chain's records (an agent's id is its chain)."""
    data = _call(url, key, state_dir, "GET", f"audit?chain={quote(chain)}&after={after}&limit={limit}")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    for record in data["records"]:
        click.echo(_render(record))
    if not data["records"]:
        click.echo("no records")


@audit.command("tail")
@click.option("--agent", "chain", default=None, help="Follow one chain (default: every chain).")
@click.option("--interval", default=1.0, show_default=True, help="Seconds between polls.")
@platform_options
def tail(chain: str | None, interval: float, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Follow the audit log as records are appended (Ctrl-C stops)."""
    seen: dict[str, int] = {}
    try:
        while True:
            chains = [chain] if chain else _call(url, key, state_dir, "GET", "audit")["chains"]
            for name in chains:
                data = _call(url, key, state_dir, "GET", f"audit?chain={quote(name)}&after={seen.get(name, 0)}&limit=1000")
                for record in data["records"]:
                    click.echo(json.dumps(record) if as_json else _render(record))
                    seen[name] = record["seq"]
            time.sleep(interval)
    except KeyboardInterrupt:
        pass


COMMANDS = [audit]
