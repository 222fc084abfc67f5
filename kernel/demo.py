"""``aos run --demo``: send the sample events and print each turn as it completes.

The demo is a client of the running platform like any other: it sends events through the HTTP
API (or, for broadcasts, onto the agent-events topic) and reads the archived turns back.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any, Callable

import yaml

from kernel import settings
from kernel.messages import Envelope
from kernel.topology import AGENT_EVENTS

EVENTS_FILE = settings.APP_ROOT / "demo" / "events.yaml"
Echo = Callable[[str], None]


def load_events(path: Path = EVENTS_FILE) -> list[dict[str, Any]]:
    events = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(events, list) or not all(isinstance(e, dict) and "type" in e for e in events):
        raise ValueError(f"{path}: expected a list of events, each with at least a 'type'")
    return events


async def send_events(platform: Any, events: list[dict[str, Any]]) -> list[str]:
    """Send each event; returns the event ids."""
    sent = []
    for event in events:
        if event.get("to"):
            status, body = await platform.api("POST", f"agents/{event['to']}/events", {
                k: v for k, v in event.items() if k != "to"})
            if status != 202:
                raise RuntimeError(f"sending {event['type']} to {event['to']} failed ({status}): {body}")
            sent.append(body["event_id"])
        else:
            envelope = Envelope(type=event["type"], source=event.get("source", "demo"), data=event.get("data"))
            await platform.host.send(AGENT_EVENTS, envelope.to_json(), message_id=envelope.id, subject=envelope.type,
                                     content_type="application/json")
            sent.append(envelope.id)
    return sent


class TurnPrinter:
    """Polls the archive of every agent and prints turns it has not printed yet, oldest first."""

    def __init__(self, platform: Any, echo: Echo) -> None:
        self.platform = platform
        self.echo = echo
        self.seen: set[str] = set()
        self.events_done: set[str] = set()
        self.count = 0

    async def poll(self) -> int:
        status, listing = await self.platform.api("GET", "agents")
        new: list[dict[str, Any]] = []
        for agent in listing["agents"] if status == 200 else []:
            _, recent = await self.platform.api("GET", f"agents/{agent['id']}/turns?limit=50")
            for row in (recent or {}).get("turns", []):
                if row["turn_id"] not in self.seen:
                    _, turn = await self.platform.api("GET", f"agents/{agent['id']}/turns/{row['turn_id']}")
                    if isinstance(turn, dict) and "outcome" in turn:
                        new.append(turn)
        for turn in sorted(new, key=lambda t: t["finished"]):
            self.seen.add(turn["turn_id"])
            self.events_done.add(turn["event"]["id"])
            self.count += 1
            self.echo(render_turn(turn, self.count))
        return len(new)


def render_turn(turn: dict[str, Any], number: int) -> str:
    event = turn["event"]
    seconds = _seconds(turn["started"], turn["finished"])
    lines = [f"── turn {number}: {turn['agent_id']} ← {event['type']} from {event['source']}  →  "
             f"{turn['outcome'].upper()}  ({seconds:.2f} s, {turn.get('provider') or 'no model call'})"]
    alignment = turn.get("alignment")
    if alignment:
        verdict = "aligned" if alignment["aligned"] else "NOT aligned"
        lines.append(f"   purpose  {verdict} ({alignment['method']}, score {alignment['score']}): {alignment['reason']}")
    for step in turn.get("steps", []):
        if step["kind"] == "tool":
            result = step.get("result") or {}
            text = " ".join(str(c.get("text", "")) for c in result.get("content", []))
            state = "error" if result.get("is_error") else "ok"
            lines.append(f"   tool     {step['server']}.{step['tool']} → {state}: {_clip(text, 140)}")
    if turn.get("reply"):
        lines.append(f"   reply    {_clip(turn['reply'], 200)}")
    if turn.get("error"):
        lines.append(f"   error    {turn['error']}")
    for output in turn.get("outputs", []):
        if output["type"] not in ("agent.reply", "agent.declined"):
            lines.append(f"   sent     {output['type']} → {output['to']}")
    if turn.get("facts"):
        lines.append(f"   pinned   {'; '.join(turn['facts'])}")
    return "\n".join(lines)


async def run_demo(platform: Any, echo: Echo, *, exit_when_idle: bool, events_file: Path = EVENTS_FILE,
                   timeout: float = 120.0) -> int:
    """Send the demo events and print turns; returns the number of turns printed."""
    events = load_events(events_file)
    echo(f"Demo: sending {len(events)} events from {events_file.relative_to(settings.APP_ROOT) if events_file.is_relative_to(settings.APP_ROOT) else events_file}")
    printer = TurnPrinter(platform, echo)
    printer.seen.update(await _archived_turn_ids(platform))
    sent = await send_events(platform, events)
    deadline = time.monotonic() + timeout
    quiet_since: float | None = None
    while True:
        await asyncio.sleep(0.2)
        printed = await printer.poll()
        if not exit_when_idle:
            continue
        done = set(sent) <= printer.events_done
        if printed or not done:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        if done and quiet_since is not None and time.monotonic() - quiet_since > 1.0:
            try:
                await platform.wait_idle(5.0)
            except Exception:
                continue
            if not await printer.poll():
                return printer.count
        if time.monotonic() > deadline:
            raise TimeoutError(f"the demo's turns did not all finish within {timeout:.0f} s")


async def _archived_turn_ids(platform: Any) -> set[str]:
    ids: set[str] = set()
    status, listing = await platform.api("GET", "agents")
    for agent in listing["agents"] if status == 200 else []:
        _, recent = await platform.api("GET", f"agents/{agent['id']}/turns?limit=200")
        ids.update(row["turn_id"] for row in (recent or {}).get("turns", []))
    return ids


def _seconds(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds()


def _clip(text: str, limit: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
