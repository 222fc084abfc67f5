"""``aos host`` (run an app with the embedded engine) and ``aos send`` (send a Service Bus message)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import click


def _resolve_app(app: str) -> str:
    path = Path(app)
    if app.endswith(".py") or path.is_dir() or path.is_file():
        return str(path.resolve())
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return app


@click.command("host")
@click.argument("app", default="function_app", required=False)
@click.option("--state", "state", default=".aos/state.sqlite", show_default=True,
              help="SQLite file for durable state ('' or ':memory:' keeps state in memory).")
@click.option("--port", default=7071, show_default=True, type=int)
@click.option("--bind", default="127.0.0.1", show_default=True)
@click.option("--settings", "settings_path", default=None,
              help="local.settings.json-style file (default: local.settings.json next to the app or in the cwd).")
@click.option("--topology", default=None, help="Topology JSON (default: the AOS_TOPOLOGY setting).")
def host(app: str, state: str, port: int, bind: str, settings_path: str | None, topology: str | None) -> None:
    """Run APP (module or file, default function_app) with no Functions host."""
    from .host import EmbeddedHost

    target = _resolve_app(app)
    if settings_path is None:
        candidates = [Path(target).parent / "local.settings.json"] if target.endswith(".py") else []
        candidates.append(Path.cwd() / "local.settings.json")
        settings_path = next((str(c) for c in candidates if c.is_file()), None)
    state_path = None if state in ("", ":memory:") else state
    if state_path:
        Path(state_path).parent.mkdir(parents=True, exist_ok=True)

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        async with EmbeddedHost(target, state_path=state_path, settings=settings_path, topology=topology,
                                port=port, bind=bind) as running:
            click.echo(f"AOS embedded host: {running.base_url}  (state: {state_path or 'in memory'})")
            for route in running.http_triggers.routes:
                methods = ",".join(sorted(route.methods)) if route.methods else "*"
                prefix = f"/{running.http_triggers.prefix}" if running.http_triggers.prefix else ""
                template = route.spec.trigger.get("route") or route.spec.name
                click.echo(f"  {route.spec.name}: [{methods}] {running.base_url}{prefix}/{template}  ({route.auth_level.lower()})")
            for spec in running.index.functions.values():
                if spec.trigger_type not in ("httpTrigger",):
                    click.echo(f"  {spec.name}: {spec.trigger_type}")
            if not running.settings.get("AOS_MASTER_KEY"):
                click.echo(f"Master key (generated for this run): {running.master_key}")
            click.echo(f"Send bus messages: POST {running.base_url}/admin/aos/bus/<queue-or-topic> (master key)")
            sys.stdout.flush()
            await stop.wait()

    try:
        asyncio.run(serve())
    except Exception as error:  # startup errors (unsupported bindings, bad settings) read better without a trace
        raise click.ClickException(str(error)) from error


def _property(text: str) -> tuple[str, Any]:
    if "=" not in text:
        raise click.BadParameter(f"expected key=value, got '{text}'")
    key, _, raw = text.partition("=")
    try:
        value: Any = json.loads(raw)
    except json.JSONDecodeError:
        value = raw
    return key, value


@click.command("send")
@click.argument("entity")
@click.option("--body", required=True, help="Message body: JSON, or any text.")
@click.option("--property", "-p", "properties", multiple=True, help="Application property key=value (repeatable).")
@click.option("--subject", default=None)
@click.option("--message-id", default=None)
@click.option("--correlation-id", default=None)
@click.option("--session-id", default=None)
@click.option("--namespace", default=None, help="The tenant namespace of a broadcast event: set as the envelope's "
              "'namespace' (the body must be a JSON object).")
@click.option("--url", default="http://127.0.0.1:7071", show_default=True, help="Base URL of a running `aos host`.")
@click.option("--key", envvar="AOS_MASTER_KEY", default=None, help="Master key (default: $AOS_MASTER_KEY).")
def send(entity: str, body: str, properties: tuple[str, ...], subject: str | None, message_id: str | None,
         correlation_id: str | None, session_id: str | None, namespace: str | None, url: str, key: str | None) -> None:
    """Send a message to queue or topic ENTITY on a running `aos host`."""
    import aiohttp

    try:
        payload: Any = json.loads(body)
    except json.JSONDecodeError:
        payload = body
    if namespace is not None:
        if not isinstance(payload, dict):
            raise click.BadParameter("--namespace sets the envelope's 'namespace': the body must be a JSON object",
                                     param_hint="--namespace")
        payload = {**payload, "namespace": namespace}
    envelope = {"body": payload, "properties": dict(_property(p) for p in properties), "subject": subject,
                "message_id": message_id, "correlation_id": correlation_id, "session_id": session_id}

    async def post() -> tuple[int, str]:
        headers = {"x-functions-key": key} if key else {}
        async with aiohttp.ClientSession() as session:
            async with session.post(f"{url.rstrip('/')}/admin/aos/bus/{entity}", json=envelope, headers=headers) as response:
                return response.status, await response.text()

    try:
        status, text = asyncio.run(post())
    except OSError as error:
        raise click.ClickException(f"cannot reach {url}: {error}") from error
    if status != 202:
        raise click.ClickException(f"send failed ({status}): {text}")
    click.echo(text)
