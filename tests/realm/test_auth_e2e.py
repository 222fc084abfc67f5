"""The HTTP API with AOS_AUTH=entra on the engine: tokens signed by a test key, served from a
loopback JWKS endpoint; every route refuses what the caller's app roles do not allow, and
`aos context-mcp` serves an agent's context with a token instead of a key."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from platform_support import REPO

from tests.governance.loopback_identity import loopback_identity

TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
AUDIENCE = "api://aos-e2e"


@pytest.fixture
async def identity():
    """A signing key and its JWKS on loopback; yields (jwks url, token factory)."""
    async with loopback_identity(TENANT, AUDIENCE, kid="e2e") as provided:
        yield provided


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


async def test_routes_enforce_app_roles_from_entra_tokens(tmp_path: Path, identity) -> None:
    """``aos run`` in its own process: function_app.py picks the host's auth level when it is
    imported, as at a Functions host's start, so the platform runs as a fresh process."""
    jwks_url, token = identity
    port, state = _free_port(), tmp_path / "state"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOS_")}
    env.update({"AOS_AUTH": "entra", "AOS_AUTH_TENANT_ID": TENANT, "AOS_AUTH_AUDIENCE": AUDIENCE,
                "AOS_AUTH_JWKS_URL": jwks_url})
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kernel.cli", "run", "--port", str(port), "--state", str(state), cwd=REPO, env=env,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while not (state / "run.json").exists():
            assert process.returncode is None, (await process.stderr.read()).decode() if process.stderr else ""
            assert time.monotonic() < deadline, "aos run did not start"
            await asyncio.sleep(0.1)
        async with aiohttp.ClientSession() as http:
            results = await _exercise(http, base_url, token)
        operator = token("AOS.Operator")
        with_token = await _context_mcp(base_url, {**env, "AOS_TOKEN": operator}, tmp_path)
        without = await _context_mcp(base_url, env, tmp_path)
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), timeout=30)
    _check(results)
    goals, fact, stderr = with_token
    assert not goals.is_error and any(goal["id"] for goal in goals.structured_content["goals"])
    assert not fact.is_error and fact.structured_content["operation"] == "remember"
    refused, _, _ = without
    assert refused.is_error and "GET /api/agents/cfo failed: HTTP 401" in refused.content[0].text
    assert "no credentials" in refused.content[0].text
    shown = json.dumps([r.model_dump(mode="json") for r in (goals, fact, refused)]) + stderr + without[2]
    assert operator not in shown


async def _context_mcp(base_url: str, env: dict[str, str], tmp_path: Path) -> tuple[Any, Any, str]:
    """`aos context-mcp cfo` over real stdio (no key; a token only if ``env`` has AOS_TOKEN): the
    answers to list_goals and remember_fact, and what it wrote on stderr."""
    params = StdioServerParameters(command=sys.executable, cwd=str(REPO), env=env, args=[
        "-m", "realm_of_agents.context_cli", "cfo", "--url", base_url, "--state", str(tmp_path / "no-run-file")])
    with tempfile.TemporaryFile("w+") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            goals = await session.call_tool("list_goals", {})
            fact = await session.call_tool("remember_fact", {"fact": "the auditor signs with a token"}) \
                if not goals.is_error else None
        errlog.seek(0)
        return goals, fact, errlog.read()


async def _exercise(http: aiohttp.ClientSession, base_url: str, token: Any) -> dict[str, tuple[int, Any]]:
    async def call(method: str, path: str, bearer: str | None, body: Any = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
        async with http.request(method, f"{base_url}/api/{path}", json=body, headers=headers) as answer:
            return answer.status, await answer.json(content_type=None)

    reader, operator, admin = token("AOS.Reader"), token("AOS.Operator"), token("AOS.Admin")
    return {
        "reader lists": await call("GET", "agents", reader),  # no function key: the token is the credential
        "no token": await call("GET", "agents", None),
        "expired": await call("GET", "agents", token("AOS.Admin", exp=int(time.time()) - 3600)),
        "wrong audience": await call("GET", "agents", token("AOS.Admin", aud="api://other")),
        "no role": await call("GET", "agents", token()),
        "reader sends": await call("POST", "agents/cfo/events", reader, {"type": "invoice.received"}),
        "operator sends": await call("POST", "agents/cfo/events", operator, {"type": "invoice.received"}),
        "operator retires": await call("POST", "agents/cto/retire", operator),
        "operator audits": await call("GET", "audit/verify", operator),
        "admin audits": await call("GET", "audit/verify", admin),
        "reader calls a tool": await call("POST", "mcp/servers/everything/tools/echo/call", reader,
                                          {"as": "cto", "arguments": {"message": "x"}}),
        "health": await call("GET", "health", None),
    }


def _check(got: dict[str, tuple[int, Any]]) -> None:
    status, listing = got["reader lists"]
    assert status == 200 and {a["id"] for a in listing["agents"]} >= {"cfo", "cto"}
    assert got["no token"] == (401, {"error": "no credentials: send 'Authorization: Bearer <token>'"})
    assert got["expired"] == (401, {"error": "the token has expired"})
    assert got["wrong audience"] == (401, {"error": "the token is for another audience"})
    assert got["no role"] == (403, {"error": "this needs the 'reader' role; the caller has: none"})
    assert got["reader sends"] == (403, {"error": "this needs the 'operator' role; the caller has: reader"})
    assert got["operator sends"][0] == 202
    assert got["operator retires"][0] == 403 and got["operator audits"][0] == 403
    assert got["admin audits"][0] == 200 and got["admin audits"][1]["ok"] is True
    assert got["reader calls a tool"][0] == 403
    assert got["health"][0] == 200
