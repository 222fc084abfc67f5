"""Tool calls of a turn through the MCP gateway over Service Bus, on the embedded engine running
function_app.py: approvals, timeouts, and answers or requests nobody can use."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kernel.messages import Envelope
from kernel.platform import Platform
from platform_support import (
    REPO,
    archived_turn,
    deadletters,
    finished_turn,
    ok,
    requires_mcp_servers,
    result_text,
    running,
    send_event,
    settle,
    tool_steps,
    wait_until,
)

KEEPER = """
kind: agent
id: keeper
display_name: Ledger Keeper
purpose: Keep the ledger file current, one approved entry at a time, and report what changed.
scope:
  in_scope: [ledger entries]
tools:
  - server: scratch
    tools: [read_text_file, write_file, edit_file]
    requires_approval: [write_file]
  - server: everything
    tools: [echo, trigger-long-running-operation]
approvals:
  - server: scratch
    tools: [edit_file]
    timeout_seconds: {edit_timeout}
subscriptions:
  - event_types: ["ledger.*"]
"""


def _setup(tmp_path: Path, *, edit_timeout: int = 3600, call_seconds: float = 30) -> tuple[str, Path]:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    (scratch / "ledger.txt").write_text("END\n")
    configs = tmp_path / "configs"
    configs.mkdir()
    (configs / "keeper.yaml").write_text(KEEPER.format(edit_timeout=edit_timeout))
    (configs / "scratch.yaml").write_text(json.dumps({
        "kind": "mcp_server", "id": "scratch", "transport": "stdio", "command": "node",
        "args": ["node_modules/@modelcontextprotocol/server-filesystem/dist/index.js", str(scratch)]}))
    (configs / "everything.yaml").write_text(json.dumps({
        "kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node",
        "args": ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"],
        "timeouts": {"call_seconds": call_seconds}}))
    return str(configs), scratch


async def _ask(platform: Platform, server: str, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    """An event whose turn (offline provider) asks for exactly this tool call."""
    return await send_event(platform, "keeper", "ledger.entry", {
        "summary": "a ledger entry", "tool_call": {"server": server, "tool": tool, "arguments": arguments}})


async def _pending(platform: Platform, count: int = 1) -> list[dict[str, Any]]:
    async def listed() -> list[dict[str, Any]] | None:
        found = (await ok(platform, "GET", "approvals"))["approvals"]
        return found if len(found) >= count else None

    return await wait_until(listed, timeout=30, what="the approval to be pending")


async def _phase(platform: Platform, turn_id: str, phase: str) -> dict[str, Any] | None:
    progress = await ok(platform, "GET", f"agents/keeper/turns/{turn_id}")
    return progress if progress.get("phase") == phase else None


async def _audit(platform: Platform, chain: str) -> list[dict[str, Any]]:
    return (await ok(platform, "GET", f"audit?chain={chain}"))["records"]


async def _audit_through(platform: Platform, chain: str, kind: str) -> list[dict[str, Any]]:
    """The chain once it holds a ``kind`` record: the archive activity stores the turn (which the
    test sees) a moment before it appends ``turn.decision``."""
    async def recorded() -> list[dict[str, Any]] | None:
        records = await _audit(platform, chain)
        return records if any(r["kind"] == kind for r in records) else None

    return await wait_until(recorded, timeout=20, what=f"'{kind}' on audit chain {chain}")


@requires_mcp_servers
async def test_a_call_needing_approval_waits_for_a_human_and_runs_once_approved(tmp_path: Path) -> None:
    configs, scratch = _setup(tmp_path)
    ledger = scratch / "ledger.txt"
    async with running(tmp_path / "state", config_paths=configs) as platform:
        sent = await _ask(platform, "scratch", "write_file", {"path": str(ledger), "content": "approved entry\n"})
        [pending] = await _pending(platform)
        assert (pending["agent_id"], pending["server"], pending["tool"]) == ("keeper", "scratch", "write_file")
        assert pending["turn_id"] == sent["turn_id"] and pending["status"] == "pending"
        assert pending["arguments"]["content"] == "approved entry\n"
        # the approval is recorded by an activity; the turn shows it once its next episode has run
        progress = await wait_until(lambda: _phase(platform, sent["turn_id"], "awaiting-approval"),
                                    what="the turn to show it awaits the approval")
        assert progress["approval_id"] == pending["id"], progress
        assert ledger.read_text() == "END\n"  # nothing runs before the answer

        answered = await ok(platform, "POST", f"approvals/{pending['id']}",
                            {"approve": True, "by": "dana", "reason": "checked"}, 202)
        assert answered["decision"]["approved"] is True
        # a second answer is refused
        await ok(platform, "POST", f"approvals/{pending['id']}", {"approve": False, "by": "eve"}, 409)
        record = await finished_turn(platform, "keeper", sent["turn_id"])
        decided = await ok(platform, "GET", f"approvals/{pending['id']}")
        audit = await _audit_through(platform, "keeper", "turn.decision")
        assert (await ok(platform, "GET", "approvals"))["approvals"] == []

    assert ledger.read_text() == "approved entry\n"
    [step] = tool_steps(record)
    assert step["approval"]["approved"] is True and step["approval"]["by"] == "dana"
    assert step["result"]["is_error"] is False
    assert decided["status"] == "decided" and decided["decision"]["by"] == "dana"
    assert [r["kind"] for r in audit] == ["approval.requested", "approval.decided", "tool.call", "turn.decision"]
    assert audit[1]["actor"] == "dana"


@requires_mcp_servers
async def test_a_declined_call_does_not_run_and_the_turn_records_why(tmp_path: Path) -> None:
    configs, scratch = _setup(tmp_path)
    ledger = scratch / "ledger.txt"
    async with running(tmp_path / "state", config_paths=configs) as platform:
        sent = await _ask(platform, "scratch", "write_file", {"path": str(ledger), "content": "unwanted\n"})
        [pending] = await _pending(platform)
        await ok(platform, "POST", f"approvals/{pending['id']}", {"approve": False, "by": "dana",
                                                                   "reason": "wrong ledger"}, 202)
        record = await finished_turn(platform, "keeper", sent["turn_id"])
        audit = await _audit_through(platform, "keeper", "turn.decision")

    assert ledger.read_text() == "END\n"
    [step] = tool_steps(record)
    assert step["result"]["error"] == "ApprovalDeclined"
    assert result_text(step) == "not run: the call was declined by dana (wrong ledger)"
    assert record["outcome"] == "replied"  # the model saw the refusal and answered
    assert [r["kind"] for r in audit] == ["approval.requested", "approval.decided", "turn.decision"]


@requires_mcp_servers
async def test_an_unanswered_approval_is_declined_at_its_deadline(tmp_path: Path) -> None:
    configs, scratch = _setup(tmp_path, edit_timeout=1)
    ledger = scratch / "ledger.txt"
    async with running(tmp_path / "state", config_paths=configs) as platform:
        sent = await _ask(platform, "scratch", "edit_file", {
            "path": str(ledger), "edits": [{"oldText": "END", "newText": "late\nEND"}]})
        [pending] = await _pending(platform)
        record = await finished_turn(platform, "keeper", sent["turn_id"], timeout=30)
        late = await platform.api("POST", f"approvals/{pending['id']}", {"approve": True, "by": "dana"})

    assert ledger.read_text() == "END\n"
    [step] = tool_steps(record)
    assert step["approval"]["by"] == "deadline" and step["approval"]["approved"] is False
    assert step["result"]["error"] == "ApprovalDeclined" and "no decision within 1 s" in result_text(step)
    assert late[0] in (404, 409), late


@requires_mcp_servers
async def test_a_call_past_the_servers_timeout_fails_cleanly_and_the_agent_goes_on(tmp_path: Path) -> None:
    configs, _ = _setup(tmp_path, call_seconds=1)
    async with running(tmp_path / "state", config_paths=configs) as platform:
        slow = await _ask(platform, "everything", "trigger-long-running-operation", {"duration": 5, "steps": 1})
        quick = await _ask(platform, "everything", "echo", {"message": "still here"})
        first = await finished_turn(platform, "keeper", slow["turn_id"], timeout=40)
        second = await finished_turn(platform, "keeper", quick["turn_id"], timeout=40)

    [step] = tool_steps(first)
    assert step["result"]["error"] == "ToolTimeout" and "timed out after 1 s" in result_text(step)
    [step] = tool_steps(second)
    assert step["result"]["is_error"] is False and result_text(step) == "Echo: still here"


async def test_responses_and_requests_nobody_can_use_are_dead_lettered_with_the_reason(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        stray = Envelope(type="mcp.response", source="mcp-gateway", to="turn-cfo-0000000000000000",
                         correlation_id="turn-cfo-0000000000000000:3", data={"content": []})
        foreign = Envelope(type="mcp.response", source="mcp-gateway", to="turn-cfo-0000000000000000",
                           correlation_id="someone-else:1", data={})
        await platform.host.send("mcp-responses", stray.to_json())
        await platform.host.send("mcp-responses", foreign.to_json())
        await platform.host.send("mcp-requests", b'{"type": "mcp.call_tool", "source": "x", "data": {"op": "nope"}}')
        await platform.host.send("mcp-requests", Envelope(type="mcp.call_tool", source="cfo", data={
            "op": "call_tool", "agent_id": "cfo", "instance_id": "turn-cfo-1", "call_id": "turn-cfo-1:0",
            "server": "everything", "tool": "echo", "arguments": {"message": "x"}, "surprise": 1}).to_json())
        finished = await send_event(platform, "cto", "incident.opened", {"summary": "db latency"})
        await settle(platform)
        late = Envelope(type="mcp.response", source="mcp-gateway", to=finished["turn_id"],
                        correlation_id=f"{finished['turn_id']}:0", data={"content": []})
        await platform.host.send("mcp-responses", late.to_json())
        await settle(platform)
        letters = await deadletters(platform)

    reasons = {letter["kind"]: [] for letter in letters}
    for letter in letters:
        reasons[letter["kind"]].append(letter["reason"])
    assert any("unknown correlation id 'turn-cfo-0000000000000000:3': no turn" in r for r in reasons["unknown-correlation"])
    assert any("'someone-else:1'" in r and "never asked for it" in r for r in reasons["malformed"]), reasons
    assert reasons["late-response"] == [f"response for '{finished['turn_id']}:0' arrived after turn "
                                        f"'{finished['turn_id']}' had finished"]
    malformed = " | ".join(reasons["malformed"])
    assert "malformed MCP request on mcp-requests" in malformed
    assert "unknown field 'surprise'" in malformed


@requires_mcp_servers
async def test_the_sample_tool_call_goes_through_the_gateway_and_lands_in_memory(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        sent = await send_event(platform, "cto", "incident.followup", {
            "summary": "check the incident tooling",
            "tool_call": {"server": "everything", "tool": "echo", "arguments": {"message": "via the bus"}}})
        await settle(platform)
        record = await archived_turn(platform, "cto", sent["turn_id"])
        cto = await ok(platform, "GET", "agents/cto")
        audit = await _audit(platform, "cto")
        servers = {s["id"]: s for s in (await ok(platform, "GET", "mcp/servers"))["servers"]}

    [step] = tool_steps(record)
    assert result_text(step) == "Echo: via the bus"
    assert "Echo: via the bus" in cto["memory"]["window"][-1]["text"]
    [call] = [r for r in audit if r["kind"] == "tool.call"]
    assert call["actor"] == "turn" and call["subject"] == "everything.echo"
    assert call["data"]["call_id"] == f"{sent['turn_id']}:0"
    assert servers["everything"]["health"]["state"] == "ready"
    assert servers["github"]["health"]["state"] == "disabled"
    assert REPO.is_dir()


@requires_mcp_servers
async def test_a_dropped_mcp_server_config_is_served_without_a_restart(tmp_path: Path) -> None:
    configs, _ = _setup(tmp_path)
    async with running(tmp_path / "state", config_paths=configs) as platform:
        before = {s["id"] for s in (await ok(platform, "GET", "mcp/servers"))["servers"]}
        (Path(configs) / "memory.yaml").write_text(json.dumps({
            "kind": "mcp_server", "id": "notes", "transport": "stdio", "command": "node",
            "args": ["node_modules/@modelcontextprotocol/server-memory/dist/index.js"],
            "env": {"MEMORY_FILE_PATH": str(tmp_path / "notes.jsonl")}}))

        async def served() -> dict[str, Any] | None:
            servers = {s["id"]: s for s in (await ok(platform, "GET", "mcp/servers"))["servers"]}
            return servers.get("notes")

        notes = await wait_until(served, timeout=30, interval=0.5, what="the dropped server to be served")
        tools = await ok(platform, "GET", "mcp/servers/notes/tools")
        denied = await platform.api("POST", "mcp/servers/notes/tools/read_graph/call", {"as": "keeper", "arguments": {}})

    assert before == {"scratch", "everything"}
    assert notes["health"]["state"] == "ready"
    assert "read_graph" in {tool["name"] for tool in tools["tools"]}
    assert denied[0] == 403 and "not granted MCP server 'notes'" in denied[1]["error"]
