"""Helpers for the platform tests (test_platform_e2e.py, test_platform_faults.py).

They run the unmodified function_app.py on the embedded engine.

Every test runs its own ``Platform`` (all roles, embedded storage and bus under a ``tmp_path``
state folder, a free port) and checks what the platform did through its HTTP API, its bus, the
turn archive and the dead-letter store.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

import pytest

from kernel.platform import Platform
from kernel.settings import APP_ROOT

REPO = APP_ROOT
MCP_PACKAGES = REPO / "node_modules" / "@modelcontextprotocol"
#: Where a Service Bus subscription's messages are counted (``EmbeddedBus.active_count``).
OUTPUTS_KERNEL = "agent-outputs/Subscriptions/kernel"
EVENTS_REALM = "agent-events/Subscriptions/realm"

requires_mcp_servers = pytest.mark.skipif(
    shutil.which("node") is None or not (MCP_PACKAGES / "server-everything").is_dir()
    or not (MCP_PACKAGES / "server-filesystem").is_dir(),
    reason="the MCP reference servers need node and node_modules (run `make setup`)",
)


@contextlib.asynccontextmanager
async def running(state_dir: Path, **options: Any) -> AsyncIterator[Platform]:
    """A started platform on ``state_dir`` (any free port), closed afterwards."""
    async with Platform(state_dir=state_dir, port=0, **options) as platform:
        yield platform


async def ok(platform: Platform, method: str, path: str, body: Any = None, status: int = 200) -> Any:
    """Call the HTTP API and check the status; returns the JSON body."""
    got, answer = await platform.api(method, path, body)
    assert got == status, f"{method} {path} answered {got}: {answer}"
    return answer


async def send_event(platform: Platform, agent_id: str, event_type: str, data: Any = None, **fields: Any) -> dict[str, Any]:
    """POST /api/agents/{id}/events; returns the 202 answer (event_id, turn_id, turn_url)."""
    return await ok(platform, "POST", f"agents/{agent_id}/events", {"type": event_type, "data": data, **fields}, 202)


async def agent(platform: Platform, agent_id: str) -> dict[str, Any]:
    return await ok(platform, "GET", f"agents/{agent_id}")


async def archived_turn(platform: Platform, agent_id: str, turn_id: str) -> dict[str, Any]:
    """The archived turn record (fails if the turn is not archived)."""
    record = await ok(platform, "GET", f"agents/{agent_id}/turns/{turn_id}")
    assert "outcome" in record, f"turn {turn_id} is not archived: {record}"
    return record


async def recent_turns(platform: Platform, agent_id: str, limit: int = 200) -> list[dict[str, Any]]:
    """Index rows of the agent's archived turns, newest first."""
    return (await ok(platform, "GET", f"agents/{agent_id}/turns?limit={limit}"))["turns"]


async def deadletters(platform: Platform) -> list[dict[str, Any]]:
    return (await ok(platform, "GET", "deadletters?limit=500"))["deadletters"]


async def settle(platform: Platform, timeout: float = 60.0) -> None:
    """Wait until the engine has nothing pending or running (timers excepted)."""
    await platform.wait_idle(timeout)


async def wait_until(check: Callable[[], Awaitable[Any]], *, timeout: float = 20.0, interval: float = 0.05,
                     what: str = "the condition") -> Any:
    """Poll ``check`` until it returns something truthy; returns it."""
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


def turn_history(platform: Platform, turn_id: str) -> list[dict[str, Any]]:
    """The turn orchestration's history events, as the Durable status API shows them."""
    return platform.host.engine.status(turn_id, show_history=True)["historyEvents"]


def entity_operations(platform: Platform, turn_id: str) -> list[list[str]]:
    """The entity operations the turn sent, grouped by the episode that sent them."""
    episodes: list[list[str]] = []
    for event in turn_history(platform, turn_id):
        if event["EventType"] == "OrchestratorStarted":
            episodes.append([])
        elif event["EventType"] == "EventSent":
            episodes[-1].append(json.loads(event["Input"])["op"])
    return [ops for ops in episodes if ops]


async def queue_while_paused(platform: Platform, agent_id: str, *numbers: int) -> list[dict[str, Any]]:
    """Pause the agent and send it one ``ledger.entry`` event per number; return the 202 answers
    once all of them wait in its inbox (in that order)."""
    await ok(platform, "POST", f"agents/{agent_id}/pause")
    sent = [await send_event(platform, agent_id, "ledger.entry", {"n": n}) for n in numbers]

    async def all_queued() -> bool:
        return (await agent(platform, agent_id))["inbox"] == len(numbers)

    await wait_until(all_queued, what=f"{len(numbers)} events queued")
    return sent


def tool_steps(record: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for step in record["steps"] if step["kind"] == "tool"]


def result_text(step: dict[str, Any]) -> str:
    return "\n".join(item.get("text", "") for item in step["result"].get("content", []))


def observe(platform: Platform, topic: str, name: str = "observer") -> str:
    """Add a catch-all subscription to ``topic`` (nothing consumes it); returns its path."""
    with platform.host.store.transaction():
        platform.host.bus.declare_subscription(topic, name)
    return f"{topic}/Subscriptions/{name}"


def drain(platform: Platform, path: str) -> list[Any]:
    """Receive and complete every message waiting on ``path`` (a queue or subscription)."""
    bus = platform.host.bus
    with platform.host.store.transaction():
        messages = bus.receive(path, max_count=10_000)
        for message in messages:
            bus.complete(str(message.lock_token))
    return messages


async def finished_turn(platform: Platform, agent_id: str, turn_id: str, timeout: float = 30.0) -> dict[str, Any]:
    """Wait for the turn to be archived (``settle`` does not wait for durable timers, such as a
    retry's back-off); returns the record."""

    async def archived() -> dict[str, Any] | None:
        status, record = await platform.api("GET", f"agents/{agent_id}/turns/{turn_id}")
        return record if status == 200 and "outcome" in record else None

    return await wait_until(archived, timeout=timeout, interval=0.1, what=f"turn {turn_id} to be archived")
