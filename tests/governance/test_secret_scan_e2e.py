"""A planted secret never leaves the places it is meant for.

One secret value is handed to the platform the way operators do it (a ``${secret:…}`` reference,
answered from the environment locally as Key Vault would in Azure) and used for real: as the
model endpoint's API key and in an MCP server's environment. Then everything goes wrong in the
ways that tend to leak: the endpoint echoes the key in its error bodies, and the agent calls a tool
that prints the server's environment. Afterwards every log record, everything written to stdout
and stderr (the MCP child's included), every answer of the HTTP API, and every byte under the
state folder (SQLite histories, blobs, the archive, the audit log) is scanned for the value.
"""

from __future__ import annotations

import json
import logging
import secrets
from pathlib import Path
from typing import Any

import pytest
from tests.realm.platform_support import finished_turn, ok, requires_mcp_servers, running, send_event, tool_steps

from tests.inference.fake_openai import FakeOpenAI

ALIGNED = '{"aligned": true, "reason": "ledger work is this agent\'s job"}'


def _write(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document))


def _configs(tmp_path: Path, model: FakeOpenAI) -> str:
    configs = tmp_path / "configs"
    _write(configs, "lab.json", {
        "kind": "inference_endpoint", "id": "lab", "type": "vllm", "url": model.base_url, "base_model": "tiny-base",
        "auth": {"type": "key", "key": "${secret:planted-key}"}, "cache": {"enabled": False},
        "retries": {"max_attempts": 2, "backoff_seconds": 0.05}, "circuit_breaker": {"failure_threshold": 50}})
    _write(configs, "everything.json", {
        "kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node",
        "args": ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"],
        "env": {"PLANTED_TOKEN": "${secret:planted-key}"}})
    _write(configs, "keeper.json", {
        "kind": "agent", "id": "keeper", "display_name": "Keeper", "purpose": "Keep the ledger current.",
        "subscriptions": [{"event_types": ["ledger.*"]}], "model": {"endpoint": "lab"},
        "tools": [{"server": "everything", "tools": ["echo", "get-env"]}]})
    return str(configs)


async def _everything_the_api_says(platform: Any, turn_ids: list[str]) -> str:
    answers = [await ok(platform, "GET", path) for path in (
        "health", "agents", "agents/keeper", "agents/keeper/turns?limit=50", "deadletters?limit=500",
        "usage?agent=keeper&days=1", "audit", "audit/verify", "mcp/servers", "configs/problems")]
    answers += [await ok(platform, "GET", f"agents/keeper/turns/{turn_id}") for turn_id in turn_ids]
    for chain in (await ok(platform, "GET", "audit"))["chains"]:
        answers.append(await ok(platform, "GET", f"audit?chain={chain}&limit=1000"))
    return json.dumps(answers)


@requires_mcp_servers
async def test_a_planted_secret_appears_in_no_log_output_answer_or_stored_byte(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]) -> None:
    secret = "sk-planted-" + secrets.token_hex(16)
    caplog.set_level(logging.DEBUG)
    state = tmp_path / "state"
    async with FakeOpenAI(models=("tiny-base",)) as model:
        # turn 1: the endpoint fails once echoing the key, then asks for the environment-printing tool
        model.reply(ALIGNED)
        model.fail(500, f"upstream refused the key {secret} (Bearer {secret})")
        model.reply(None, tool_calls=[{"id": "call_env", "name": "everything__get-env", "arguments": {}}])
        model.reply("Environment inspected.")
        # turn 2: the endpoint rejects the key for good, echoing it each time
        model.reply(ALIGNED)
        for _ in range(4):
            model.fail(400, f"invalid api key: {secret}")
        async with running(state, config_paths=_configs(tmp_path, model),
                           extra_settings={"PLANTED_KEY": secret}) as platform:
            first = await send_event(platform, "keeper", "ledger.entry", {"summary": "inspect the tool environment"})
            await finished_turn(platform, "keeper", first["turn_id"])
            second = await send_event(platform, "keeper", "ledger.entry", {"summary": "and again"})
            await finished_turn(platform, "keeper", second["turn_id"])
            said = await _everything_the_api_says(platform, [first["turn_id"], second["turn_id"]])
            replied = json.loads(said)
        authorizations = list(model.authorizations)

    # the secret was really used where it belongs: the endpoint got it, the MCP server had it
    assert f"Bearer {secret}" in authorizations
    turn_one = next(a for a in replied if isinstance(a, dict) and a.get("turn_id") == first["turn_id"])
    [env_step] = tool_steps(turn_one)
    printed = json.dumps(env_step["result"])
    masked = "PLANTED_TOKEN" in printed and "[redacted]" in printed and secret not in printed
    assert masked, "the tool printed the variable, masked (the failure message keeps the value out of the output)"
    turn_two = next(a for a in replied if isinstance(a, dict) and a.get("turn_id") == second["turn_id"])
    assert turn_two["outcome"] == "failed" and "HTTP 400" in turn_two["error"], "the endpoint's answer is on the turn"
    kept_out = "invalid api key" in turn_two["error"] and secret not in turn_two["error"]
    assert kept_out, "the endpoint's error body is on the turn without the key"

    leaks = []
    if secret in said:
        leaks.append("an HTTP API answer")
    if any(secret in record.getMessage() or secret in (record.exc_text or "") for record in caplog.records):
        leaks.append("a log record")
    if secret in caplog.text:
        leaks.append("the formatted log")
    out, err = capfd.readouterr()
    if secret in out or secret in err:
        leaks.append("stdout/stderr")
    planted = secret.encode()
    leaks += [str(path.relative_to(state)) for path in sorted(state.rglob("*"))
              if path.is_file() and planted in path.read_bytes()]
    assert not leaks, f"the planted secret leaked into: {', '.join(leaks)}"
