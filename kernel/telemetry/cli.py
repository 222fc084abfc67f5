"""``aos traces`` and ``aos trace ID``: follow what happened, from the spans ``aos run`` writes.

    aos traces [--agent ID] [--limit 20]      recent traces, newest first
    aos trace ID                              one trace as an indented tree (ID: trace id, a prefix
                                              of one, a turn id or an event id)
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from kernel import settings
from kernel.telemetry.jsonl import read_spans
from kernel.telemetry.setup import LOCAL_SPANS_FILE
from kernel.telemetry.traces import find, group, summary_line, tree_lines

DEFAULT_STATE = ".aos"


def _spans_file(state_dir: str, file: str | None) -> Path:
    """--file, else AOS_TELEMETRY_CONSOLE when it names a file, else the state folder's spans file."""
    if file:
        return Path(file)
    console = settings.get("AOS_TELEMETRY_CONSOLE").strip()
    if console and console.lower() not in ("off", "stdout", "stderr"):
        path = Path(console)
        return path if path.is_absolute() else settings.APP_ROOT / path
    return Path(state_dir) / LOCAL_SPANS_FILE


def _load(state_dir: str, file: str | None) -> tuple[Path, dict]:
    path = _spans_file(state_dir, file)
    if not path.is_file():
        raise click.ClickException(
            f"no spans at {path}: `aos run` writes them there while it runs (spans are flushed every few seconds); "
            "with an OTLP or Azure Monitor exporter configured, look there instead (docs/observability.md)")
    return path, group(read_spans(path))


def _file_options(command: click.Command) -> click.Command:
    command = click.option("--file", "file", default=None, type=click.Path(dir_okay=False),
                           help="Span file (default: AOS_TELEMETRY_CONSOLE if a file, else STATE/telemetry/spans.jsonl).")(command)
    return click.option("--state", "state_dir", default=DEFAULT_STATE, show_default=True,
                        help="State folder of a local `aos run`.")(command)


@click.command("traces")
@click.option("--agent", "agent_id", default=None, help="Only traces in which this agent took part.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000))
@_file_options
def traces(agent_id: str | None, limit: int, state_dir: str, file: str | None) -> None:
    """List recent traces, newest first: start, trace id, spans, duration, root span, agents, errors."""
    path, found = _load(state_dir, file)
    chosen = [t for t in found.values() if agent_id is None or agent_id in t.agents]
    chosen.sort(key=lambda t: t.start, reverse=True)
    if not chosen:
        click.echo(f"no traces{f' with agent {agent_id}' if agent_id else ''} in {path}")
        return
    for trace in chosen[:limit]:
        click.echo(summary_line(trace))


@click.command("trace")
@click.argument("trace_id")
@click.option("--json", "as_json", is_flag=True, help="Print the trace's span records as JSON.")
@_file_options
def trace(trace_id: str, as_json: bool, state_dir: str, file: str | None) -> None:
    """Show one trace as a tree of spans. TRACE_ID: a trace id, a unique prefix of one, a turn id or an event id."""
    path, found = _load(state_dir, file)
    matches = find(found, trace_id)
    if not matches:
        raise click.ClickException(f"no trace '{trace_id}' in {path} (`aos traces` lists them)")
    if len(matches) > 1:
        raise click.ClickException(f"'{trace_id}' matches {len(matches)} traces: "
                                   + ", ".join(t.trace_id for t in matches[:10]))
    if as_json:
        click.echo(json.dumps(sorted(matches[0].spans, key=lambda s: s.get("start") or ""), indent=2))
        return
    for line in tree_lines(matches[0]):
        click.echo(line)


COMMANDS = [traces, trace]
