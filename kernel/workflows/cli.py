"""``aos workflows``: declared workflows and their runs on a running platform.

    aos workflows list | aos workflows runs [--workflow ID]
    aos workflows run NAME --input JSON [--wait] | aos workflows status RUN
    aos workflows cancel RUN [--reason R] | aos workflows approve|decline RUN STEP [--reason R]
    aos workflows event RUN NAME [--data JSON]
"""

from __future__ import annotations

import getpass
import json
import time
from datetime import datetime
from typing import Any
from urllib.parse import quote

import click

from kernel.platform_cli import _call, platform_options
from kernel.workflows import graph

FINISHED = ("completed", "failed", "cancelled", "error", "terminated")


@click.group("workflows")
def workflows() -> None:
    """Declarative multi-agent workflows: start runs, follow them step by step, answer approvals."""


def _json_option(value: str, option: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not valid JSON: {error}", param_hint=option) from None


@workflows.command("list")
@platform_options
def list_workflows(url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Declared workflows with their steps in DAG order."""
    data = _call(url, key, state_dir, "GET", "workflows")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    for workflow in data["workflows"]:
        trigger = workflow.get("trigger") or {}
        starts = ", ".join([*(f"event {t}" for t in trigger.get("events") or []),
                            *([f"schedule {trigger['schedule']}"] if trigger.get("schedule") else [])])
        click.echo(f"{workflow['id']}{'' if workflow['enabled'] else ' (disabled)'}  {workflow.get('description') or ''}")
        click.echo(f"    {_chain(workflow['steps'])}" + (f"    started by {starts}" if starts else ""))
    if not data["workflows"]:
        click.echo("no workflows are declared (workflow_configs/)")


def _chain(steps: list[dict[str, Any]]) -> str:
    """Steps by DAG level: ``a → b, c → d``."""
    levels = graph.depths({step["id"]: step["needs"] for step in steps})
    by_level: dict[int, list[str]] = {}
    for step in steps:
        by_level.setdefault(levels[step["id"]], []).append(step["id"])
    return " → ".join(", ".join(by_level[level]) for level in sorted(by_level))


@workflows.command("runs")
@click.option("--workflow", default=None, help="Only this workflow's runs.")
@click.option("--limit", default=20, show_default=True)
@platform_options
def runs(workflow: str | None, limit: int, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Recent runs, newest first."""
    query = f"workflows/runs?limit={limit}" + (f"&workflow={quote(workflow)}" if workflow else "")
    data = _call(url, key, state_dir, "GET", query)
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    click.echo(f"{'RUN':<44}{'STATUS':<14}STARTED")
    for row in data["runs"]:
        click.echo(f"{row['run_id']:<44}{row.get('status', ''):<14}{str(row.get('started', ''))[:19]}")


@workflows.command("run")
@click.argument("name")
@click.option("--input", "input_json", default="{}", show_default=True, help="The run's input as JSON.")
@click.option("--wait", is_flag=True, help="Follow the run until it finishes or waits for a person.")
@click.option("--timeout", default=600.0, show_default=True, help="With --wait: give up after this many seconds.")
@platform_options
def run(name: str, input_json: str, wait: bool, timeout: float, url: str | None, key: str | None, state_dir: str,
        as_json: bool) -> None:
    """Start a run of workflow NAME."""
    value = _json_option(input_json, "--input")
    started = _call(url, key, state_dir, "POST", f"workflows/{quote(name)}/start", {"input": value})
    if not wait:
        return click.echo(json.dumps(started, indent=2) if as_json else f"run {started['run_id']} started")
    click.echo(f"run {started['run_id']} started")
    deadline = time.monotonic() + timeout
    while True:
        view = _call(url, key, state_dir, "GET", f"workflows/runs/{quote(started['run_id'])}")
        waiting = [s for s in view.get("steps") or [] if s.get("status") == "running" and s.get("waiting")]
        if view.get("status") in FINISHED or waiting or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    if as_json:
        return click.echo(json.dumps(view, indent=2))
    _show(view)
    if view.get("status") not in FINISHED and not waiting:
        raise click.ClickException(f"the run has not finished after {timeout:g} s; follow it with "
                                   f"`aos workflows status {view['run_id']}`")
    if view.get("status") in ("failed", "error", "terminated"):
        raise click.ClickException(view.get("error") or f"the run {view['status']}")


@workflows.command("status")
@click.argument("run_id")
@platform_options
def status(run_id: str, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """A run step by step: status, attempts, duration, and what each step waits for."""
    view = _call(url, key, state_dir, "GET", f"workflows/runs/{quote(run_id)}")
    if as_json:
        return click.echo(json.dumps(view, indent=2))
    _show(view)


def _show(view: dict[str, Any]) -> None:
    steps = view.get("steps") or []
    click.echo(f"{view['run_id']}  {view.get('workflow')}  →  {str(view.get('status')).upper()}"
               + (f"  ({_duration(view.get('started'), view.get('finished'))})" if view.get("finished") else ""))
    if view.get("error"):
        click.echo(f"  error: {view['error']}")
    if view.get("compensated"):
        click.echo(f"  compensated: {', '.join(view['compensated'])}")
    levels = graph.depths({s["id"]: s.get("needs") or [] for s in steps}) if steps else {}
    click.echo(f"  {'STEP':<24}{'KIND':<10}{'STATUS':<13}{'TRIES':>5}{'TIME':>9}  DETAIL")
    for step in sorted(steps, key=lambda s: (levels.get(s["id"], 0), steps.index(s))):
        label = ("  " * levels.get(step["id"], 0) + step["id"])[:23]
        click.echo(f"  {label:<24}{step.get('kind', ''):<10}{step.get('status', ''):<13}{step.get('attempts', 0):>5}"
                   f"{_duration(step.get('started'), step.get('finished')):>9}  {_detail(view, step)}")


def _detail(view: dict[str, Any], step: dict[str, Any]) -> str:
    waiting = step.get("waiting") or {}
    if step.get("status") == "running" and step.get("kind") == "approval" and waiting:
        return (f"waiting for a decision until {waiting.get('until', '')[:19]}: "
                f"aos workflows approve {view['run_id']} {step['id']}")
    if step.get("status") == "running" and step.get("kind") == "wait" and waiting:
        return f"waiting for event '{waiting.get('event')}' until {waiting.get('until', '')[:19]}"
    if step.get("error"):
        return str(step["error"])[:100]
    if step.get("reason"):
        return f"skipped: {step['reason']}"
    compensation = step.get("compensation")
    output = step.get("output")
    text = output.get("text") if isinstance(output, dict) and "text" in output else output
    if isinstance(output, dict) and "approved" in output:
        text = f"{'approved' if output['approved'] else 'declined'} by {output.get('by')}"
    detail = " ".join(str(text).split())[:90] if text is not None else ""
    if compensation:
        detail = f"[undo {compensation.get('status')}] {detail}"
    return detail


def _duration(started: str | None, finished: str | None) -> str:
    if not started or not finished:
        return "-"
    seconds = (datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds()
    return f"{seconds * 1000:.0f}ms" if seconds < 1 else f"{seconds:.1f}s"


@workflows.command("cancel")
@click.argument("run_id")
@click.option("--reason", default=None)
@platform_options
def cancel(run_id: str, reason: str | None, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Cancel a run: no new steps start, and what was done is compensated."""
    data = _call(url, key, state_dir, "POST", f"workflows/runs/{quote(run_id)}/cancel",
                 {"reason": reason, "by": getpass.getuser()})
    click.echo(json.dumps(data, indent=2) if as_json else f"cancelling {run_id}")


def _answer(approve: bool) -> click.Command:
    verb = "approve" if approve else "decline"

    @click.command(verb, help=f"{verb.capitalize()} an approval step of a run.")
    @click.argument("run_id")
    @click.argument("step")
    @click.option("--reason", required=not approve, default=None)
    @click.option("--by", default=None, help="Who decides (default: your user name).")
    @platform_options
    def answer(run_id: str, step: str, reason: str | None, by: str | None, url: str | None, key: str | None,
               state_dir: str, as_json: bool) -> None:
        data = _call(url, key, state_dir, "POST", f"workflows/runs/{quote(run_id)}/steps/{quote(step)}/approval",
                     {"approve": approve, "by": by or getpass.getuser(), "reason": reason})
        click.echo(json.dumps(data, indent=2) if as_json else f"{verb}d step {step} of {run_id}")

    return answer


workflows.add_command(_answer(True))
workflows.add_command(_answer(False))


@workflows.command("event")
@click.argument("run_id")
@click.argument("name")
@click.option("--data", "data_json", default="null", help="The event's data as JSON.")
@platform_options
def event(run_id: str, name: str, data_json: str, url: str | None, key: str | None, state_dir: str,
          as_json: bool) -> None:
    """Raise the event a wait step of the run waits for."""
    data = _call(url, key, state_dir, "POST", f"workflows/runs/{quote(run_id)}/events/{quote(name)}",
                 {"data": _json_option(data_json, "--data")})
    click.echo(json.dumps(data, indent=2) if as_json else f"raised {name} in {run_id} (step {data['step']})")
