"""The MCP gateway enforces the tool-call rate limits of an agent's policies, on a real MCP server
and the embedded storage ports: a refused call is not run, a redelivered request gets the same
answer without being counted again, and a changed policy applies to the next call."""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from kernel.adapters.embedded_blob import EmbeddedBlobStore
from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.config.loader import ConfigSet, load_configs
from kernel.governance.audit import AuditLog
from kernel.governance.policy_guard import PolicyGuard
from kernel.governance.ratelimit import ToolCallLimiter
from mcp_servers.gateway import ToolGateway
from mcp_servers.manager import McpServerManager

REPO = Path(__file__).resolve().parents[2]
PACKAGES = REPO / "node_modules" / "@modelcontextprotocol"
NOW = datetime(2030, 1, 1, 10, 5, 30, tzinfo=timezone.utc)

pytestmark = pytest.mark.skipif(
    shutil.which("node") is None or not (PACKAGES / "server-everything").is_dir(),
    reason="the MCP reference servers need node and node_modules (run `make setup`)")


def _configs(folder: Path, per_minute: int) -> ConfigSet:
    folder.mkdir(exist_ok=True)
    (folder / "everything.json").write_text(json.dumps({
        "kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node",
        "args": [str(PACKAGES / "server-everything" / "dist" / "index.js"), "stdio"],
        "tools": {"idempotent": ["get-sum"]}}))
    for agent_id in ("clerk", "other"):
        (folder / f"{agent_id}.json").write_text(json.dumps({
            "kind": "agent", "id": agent_id, "display_name": agent_id, "purpose": "Echo things back.",
            "tools": [{"server": "everything", "tools": ["echo", "get-sum"]}]}))
    (folder / "paced.json").write_text(json.dumps({
        "kind": "policy", "id": "paced", "applies_to": ["clerk"], "tool_calls": {"per_minute": per_minute}}))
    configs = load_configs([folder])
    assert not configs.errors, configs.errors
    return configs


@pytest.fixture
async def world(tmp_path: Path) -> Any:
    current = {"configs": _configs(tmp_path / "configs", per_minute=1)}
    blobs = EmbeddedBlobStore(tmp_path / "blobs")
    tables = EmbeddedTableStore(tmp_path / "tables.sqlite")
    audit = AuditLog(tables)
    manager = McpServerManager(current["configs"].mcp_servers.values(), app_root=REPO)
    await manager.start()
    guard = PolicyGuard(tables, lambda: current["configs"], audit, clock=lambda: NOW)
    gateway = ToolGateway(manager, lambda: current["configs"], blobs, tables, audit, policy=guard)
    try:
        yield gateway, audit, tables, current, tmp_path
    finally:
        await gateway.close()
        await blobs.close()
        await tables.close()


def _text(result: dict[str, Any]) -> str:
    return "\n".join(item.get("text", "") for item in result["content"])


async def test_a_call_over_the_rate_limit_is_not_run_and_a_redelivery_gets_the_same_answer(world: Any) -> None:
    gateway, audit, tables, _, _ = world
    first = await gateway.call_tool("clerk", "everything", "echo", {"message": "one"}, call_id="turn-1:0")
    second = await gateway.call_tool("clerk", "everything", "echo", {"message": "two"}, call_id="turn-1:1")
    again = await gateway.call_tool("clerk", "everything", "echo", {"message": "two"}, call_id="turn-1:1")
    other = await gateway.call_tool("other", "everything", "echo", {"message": "free"}, call_id="turn-2:0")

    assert _text(first) == "Echo: one" and _text(other) == "Echo: free"
    assert second["is_error"] is True and second["error"] == "PolicyRefused"
    assert _text(second).startswith("refused by policy: policy 'paced': agent 'clerk' has made 1 tool call this "
                                    "minute (limit 1 per minute); the call everything.echo was not run")
    assert second["policy"]["resets_at"] == "2030-01-01T10:06:00+00:00"
    assert again == second  # the kept answer, not a second count
    assert await ToolCallLimiter(tables).counts("clerk", ["minute"], now=NOW) == {"minute": 1}
    records = await audit.records("clerk")
    assert [r.kind for r in records] == ["tool.call", "policy.refused"]
    refused = records[1]
    assert (refused.actor, refused.subject) == ("policy:paced", "everything.echo")
    assert refused.data["turn_id"] == "turn-1" and refused.data["call_id"] == "turn-1:1"
    assert refused.data["rule"] == "tool_calls.per_minute" and "two" not in json.dumps(refused.data)


async def test_idempotent_tools_count_at_every_request_and_a_changed_policy_applies_at_once(world: Any) -> None:
    gateway, _, _, current, tmp_path = world
    ok = await gateway.call_tool("clerk", "everything", "get-sum", {"a": 1, "b": 2}, call_id="t:0")
    refused = await gateway.call_tool("clerk", "everything", "get-sum", {"a": 1, "b": 2}, call_id="t:0")
    assert ok["is_error"] is False and refused["error"] == "PolicyRefused"

    current["configs"] = _configs(tmp_path / "configs", per_minute=3)  # the operator raises the limit
    assert _text(await gateway.call_tool("clerk", "everything", "echo", {"message": "now"}, call_id="t:1")) == (
        "Echo: now")
