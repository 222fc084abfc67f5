"""``aos run`` and the commands that talk to a running platform.

    aos run [--port 7071] [--state .aos] [--demo [--exit-when-idle]]
    aos agents | aos agent ID | aos send-event ID --type T --data JSON
    aos pause|resume|retire ID | aos turns ID | aos turn ID TURN | aos memory ID QUERY | aos deadletters
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from kernel import settings
from kernel.telemetry.config import TelemetryConfigError
from kernel.client import (
    ApiError,
    PlatformClient,
    PlatformUnreachable,
    SignInFailed,
    key_from_run_file,
    remove_run_file,
    write_run_file,
)

DEFAULT_STATE = ".aos"


@click.command("run")
@click.option("--port", default=7071, show_default=True, type=int, help="HTTP port (0 picks a free one).")
@click.option("--bind", default="127.0.0.1", show_default=True)
@click.option("--state", "state_dir", default=DEFAULT_STATE, show_default=True, type=click.Path(file_okay=False),
              help="Folder for all local state: engine SQLite, blobs, tables. Agents live on across runs.")
@click.option("--demo", is_flag=True, help="Send the sample events (demo/events.yaml) and print each turn.")
@click.option("--exit-when-idle", is_flag=True, help="With --demo: exit once the demo's turns are done.")
@click.option("--verbose", "-v", is_flag=True, help="Log the platform's own messages.")
def run(port: int, bind: str, state_dir: str, demo: bool, exit_when_idle: bool, verbose: bool) -> None:
    """Run the whole platform locally: engine, kernel, agents and MCP servers, no cloud needed."""
    from kernel.platform import Platform

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if exit_when_idle and not demo:
        raise click.UsageError("--exit-when-idle goes with --demo")
    state = Path(state_dir)

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with Platform(state_dir=state, port=port, bind=bind) as platform:
            write_run_file(platform.state_dir, platform.base_url, platform.key)
            try:
                _banner(platform)
                if demo:
                    from kernel.demo import run_demo

                    demo_task = asyncio.create_task(run_demo(platform, _echo, exit_when_idle=exit_when_idle))
                    stopped = asyncio.create_task(stop.wait())
                    finished, _ = await asyncio.wait({demo_task, stopped}, return_when=asyncio.FIRST_COMPLETED)
                    if demo_task in finished:
                        count = demo_task.result()
                        await _summary(platform)
                        _echo(f"Demo done: {count} turn(s). State is kept in {platform.state_dir}.")
                        if exit_when_idle:
                            return 0
                    else:
                        demo_task.cancel()
                        return 0
                _echo("Running. Ctrl-C stops.")
                await stop.wait()
                return 0
            finally:
                remove_run_file(platform.state_dir)

    try:
        sys.exit(asyncio.run(main()))
    except (OSError, TelemetryConfigError) as error:  # a busy port, an unusable telemetry setting
        raise click.ClickException(f"cannot start the platform: {error}") from None


def _echo(text: str) -> None:
    click.echo(text)
    sys.stdout.flush()


def _banner(platform: Any) -> None:
    configs = platform.configs
    report = platform.last_sync
    _echo(f"AOS is running at {platform.base_url}  (state: {platform.state_dir})")
    _echo(f"  agents: {', '.join(sorted(configs.agents))}  (configured {len(report['configured'])}, "
          f"unchanged {len(report['unchanged'])}, retired {len(report['retired'])})")
    enabled = sorted(s.id for s in configs.mcp_servers.values() if s.enabled)
    _echo(f"  MCP servers: {', '.join(enabled)} (started on first tool call; turns reach them through the "
          "gateway on Service Bus — `aos mcp servers`)")
    _echo("  models: " + _models_line(configs))
    if configs.problems:
        _echo(f"  config problems: {len(configs.errors)} error(s), {len(configs.problems) - len(configs.errors)} "
              "warning(s) — run `aos validate`")
    _echo(f"  API: {platform.base_url}/api/agents  (function key: see `aos agents`, which finds it in "
          f"{platform.state_dir / 'run.json'})")
    _echo(f"  remote MCP: {platform.base_url}/runtime/webhooks/mcp  (same key, x-functions-key; docs/remote-mcp.md)")
    _echo(f"  telemetry: {platform.telemetry}  (`aos traces`, `aos trace ID`; docs/observability.md)")


def _models_line(configs: Any) -> str:
    """Which agents a model answers, and which the offline provider answers (and why)."""
    default = settings.get("AOS_INFERENCE_ENDPOINT").strip()
    online: list[str] = []
    offline: dict[str, list[str]] = {}
    for agent in sorted(configs.agents.values(), key=lambda a: a.id):
        named = agent.model.endpoint
        endpoint = configs.endpoints.get(named) if named else None
        if endpoint is not None and endpoint.enabled:
            online.append(f"{agent.id} → {named}")
        elif named:
            offline.setdefault(f"endpoint '{named}' is disabled", []).append(agent.id)
        elif default:
            online.append(f"{agent.id} → AOS_INFERENCE_ENDPOINT")
        else:
            offline.setdefault("no endpoint configured", []).append(agent.id)
    parts = online + [f"{', '.join(ids)} offline ({why})" for why, ids in offline.items()]
    return "; ".join(parts) + ("; offline replies are labelled [offline]" if offline else "")


async def _summary(platform: Any) -> None:
    _, listing = await platform.api("GET", "agents")
    _echo("Agents:")
    for agent in listing["agents"]:
        counters = agent.get("counters") or {}
        _echo(f"  {agent['id']:<12} {agent['status']:<10} turns {counters.get('turns', 0):>3}  declined "
              f"{counters.get('declined', 0)}  failed {counters.get('failed', 0)}  tool calls {counters.get('tool_calls', 0)}")


# -- commands that talk to a running platform -----------------------------------------------------

_TOKEN, _SCOPE = "aos.token", "aos.auth_scope"


def _client(url: str | None, key: str | None, state_dir: str) -> PlatformClient:
    """The one place commands get their client: URL, key, and the Entra ID token options of the command."""
    target = url or settings.get("AOS_URL")
    context = click.get_current_context(silent=True)
    meta = context.meta if context is not None else {}
    return PlatformClient(target, key or key_from_run_file(target, Path(state_dir)), token=meta.get(_TOKEN),
                          token_scope=meta.get(_SCOPE))


def _remember(name: str) -> Any:
    """Keep an option's value on the click context for ``_client`` instead of passing it to every command."""
    def callback(context: click.Context, _param: click.Parameter, value: str | None) -> None:
        if value:
            context.meta[name] = value
    return callback


def platform_options(command: Any) -> Any:
    command = click.option("--url", default=None, help="Platform URL (default: the AOS_URL setting, http://127.0.0.1:7071).")(command)
    command = click.option("--key", envvar="AOS_MASTER_KEY", default=None,
                           help="Function or master key (default: $AOS_MASTER_KEY, else the local run file).")(command)
    command = click.option("--token", envvar="AOS_TOKEN", default=None, expose_value=False, callback=_remember(_TOKEN),
                           help="Entra ID bearer token, for a platform with AOS_AUTH=entra (default: $AOS_TOKEN). "
                                "Never printed.")(command)
    command = click.option("--auth-scope", envvar="AOS_AUTH_SCOPE", default=None, expose_value=False,
                           callback=_remember(_SCOPE),
                           help="Without --token: get a token for this scope (api://<app-id>/.default) with "
                                "DefaultAzureCredential: az login, managed or workload identity (default: "
                                "$AOS_AUTH_SCOPE).")(command)
    command = click.option("--state", "state_dir", default=DEFAULT_STATE, show_default=True,
                           help="State folder of a local `aos run` (where its run file is).")(command)
    command = click.option("--json", "as_json", is_flag=True, help="Print the raw JSON.")(command)
    return command


def _call(url: str | None, key: str | None, state_dir: str, method: str, path: str, body: Any = None) -> Any:
    try:
        return _client(url, key, state_dir).call(method, path, body)
    except (ApiError, PlatformUnreachable, SignInFailed) as error:
        raise click.ClickException(str(error)) from None


@click.command("agents")
@platform_options
def agents(url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """List agents with their status and counters."""
    data = _call(url, key, state_dir, "GET", "agents")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    click.echo(f"{'AGENT':<14}{'STATUS':<14}{'TURNS':>6}{'DECLINED':>10}{'FAILED':>8}{'REFUSED':>9}{'INBOX':>7}  CONFIG")
    for agent in data["agents"]:
        counters = agent.get("counters") or {}
        click.echo(f"{agent['id']:<14}{agent['status']:<14}{counters.get('turns', 0):>6}{counters.get('declined', 0):>10}"
                   f"{counters.get('failed', 0):>8}{counters.get('refused', 0):>9}{agent.get('inbox', 0):>7}  "
                   f"{agent.get('source') or '(removed)'}")


@click.command("agent")
@click.argument("agent_id")
@platform_options
def agent(agent_id: str, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Show one agent: status, purpose, goals, counters, memory."""
    data = _call(url, key, state_dir, "GET", f"agents/{agent_id}")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    click.echo(f"{data['id']} — {data.get('display_name') or ''}  [{data['status']}]  config {data.get('config_version')}")
    if not data.get("registered"):
        return
    click.echo(f"purpose: {data.get('purpose')}")
    counters = data["counters"]
    click.echo("counters: " + ", ".join(f"{k} {v}" for k, v in counters.items()))
    click.echo(f"inbox: {data['inbox']}  state: {data['state_bytes']} bytes of {data['memory_budget']['max_state_bytes']}")
    click.echo("goals:")
    for goal in data["goals"]:
        click.echo(f"  {goal['id']:<24} {goal['status']:<10} {goal['progress']:>3}%  {goal['description']}")
    memory = data["memory"]
    click.echo(f"memory: {len(memory['window'])} recent turn(s), {len(memory['summary'])} summary line(s) "
               f"({memory['summarized_turns']} turns summarized), {len(memory['facts'])} fact(s)")
    for fact in memory["facts"]:
        click.echo(f"  fact: {fact}")
    for turn in memory["window"][-5:]:
        click.echo(f"  {turn['time'][:19]} {turn['event_type']} ({turn['outcome']}): {turn['text'][:120]}")


@click.command("send-event")
@click.argument("agent_id")
@click.option("--type", "event_type", required=True, help="Event type, such as invoice.received.")
@click.option("--data", default=None, help="Event data as JSON (default: none).")
@click.option("--subject", default=None)
@click.option("--wait/--no-wait", default=False, help="Wait for the turn and print it.")
@platform_options
def send_event(agent_id: str, event_type: str, data: str | None, subject: str | None, wait: bool, url: str | None,
               key: str | None, state_dir: str, as_json: bool) -> None:
    """Send an event to an agent."""
    body: dict[str, Any] = {"type": event_type, "source": "cli"}
    if data is not None:
        try:
            body["data"] = json.loads(data)
        except json.JSONDecodeError as error:
            raise click.BadParameter(f"not valid JSON: {error}", param_hint="--data") from None
    if subject:
        body["subject"] = subject
    sent = _call(url, key, state_dir, "POST", f"agents/{agent_id}/events", body)
    if not wait:
        return click.echo(json.dumps(sent, indent=2) if as_json else
                          f"sent {sent['event_id']} to {agent_id}; turn {sent['turn_id']}")
    import time

    deadline = time.monotonic() + 120
    client = _client(url, key, state_dir)
    while time.monotonic() < deadline:
        try:
            turn = client.call("GET", f"agents/{agent_id}/turns/{sent['turn_id']}")
        except ApiError as error:
            if error.status != 404:  # 404: the event is still on its way to the agent
                raise click.ClickException(str(error)) from None
            turn = {}
        except (PlatformUnreachable, SignInFailed) as error:
            raise click.ClickException(str(error)) from None
        if "outcome" in turn:
            from kernel.demo import render_turn

            return click.echo(json.dumps(turn, indent=2) if as_json else render_turn(turn, 1))
        time.sleep(0.2)
    raise click.ClickException(f"turn {sent['turn_id']} did not finish within 120 s")


def _command(name: str, help_text: str) -> click.Command:
    @click.command(name, help=help_text)
    @click.argument("agent_id")
    @platform_options
    def command(agent_id: str, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
        result = _call(url, key, state_dir, "POST", f"agents/{agent_id}/{name}")
        click.echo(json.dumps(result, indent=2) if as_json else f"{agent_id}: {result.get('status', result)}")

    return command


pause = _command("pause", "Pause an agent: its events wait in its inbox.")
resume = _command("resume", "Resume a paused agent: its queued events run in order.")
retire = _command("retire", "Retire an agent: it takes no more events; its state is kept.")


@click.command("turns")
@click.argument("agent_id")
@click.option("--limit", default=20, show_default=True)
@platform_options
def turns(agent_id: str, limit: int, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """An agent's recent turns from the archive, newest first."""
    data = _call(url, key, state_dir, "GET", f"agents/{agent_id}/turns?limit={limit}")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    for row in data["turns"]:
        click.echo(f"{row['time'][:19]}  {row['turn_id']}  {row['event_type']:<24} {row['outcome']}")


@click.command("turn")
@click.argument("agent_id")
@click.argument("turn_id")
@platform_options
def turn(agent_id: str, turn_id: str, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """One turn in full (from the archive), or its progress while it runs."""
    data = _call(url, key, state_dir, "GET", f"agents/{agent_id}/turns/{turn_id}")
    if as_json or "outcome" not in data:
        return click.echo(json.dumps(data, indent=2))
    from kernel.demo import render_turn

    click.echo(render_turn(data, 1))


@click.command("memory")
@click.argument("agent_id")
@click.argument("query")
@click.option("--limit", default=10, show_default=True)
@platform_options
def memory(agent_id: str, query: str, limit: int, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Search an agent's memory: archived turns and hot memory."""
    from urllib.parse import quote

    data = _call(url, key, state_dir, "GET", f"agents/{agent_id}/memory?q={quote(query)}&limit={limit}")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    for hit in data["results"]:
        click.echo(f"{hit['score']:.2f}  {hit['time'][:19]}  {hit['turn_id']}  {hit['event_type']}: {hit['text'][:100]}")
    for line in data.get("hot_memory", []):
        click.echo(f"hot   {json.dumps(line)[:140]}")
    if not data["results"] and not data.get("hot_memory"):
        click.echo("no matches")


@click.command("deadletters")
@click.option("--limit", default=50, show_default=True)
@platform_options
def deadletters(limit: int, url: str | None, key: str | None, state_dir: str, as_json: bool) -> None:
    """Messages the platform could not act on, with the reason."""
    data = _call(url, key, state_dir, "GET", f"deadletters?limit={limit}")
    if as_json:
        return click.echo(json.dumps(data, indent=2))
    for record in data["deadletters"]:
        click.echo(f"{record['time'][:19]}  {record['kind']:<14} {record['reason']}")
    if not data["deadletters"]:
        click.echo("no dead letters")


COMMANDS = [run, agents, agent, send_event, pause, resume, retire, turns, turn, memory, deadletters]
