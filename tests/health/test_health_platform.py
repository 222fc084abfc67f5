"""Liveness and readiness on the embedded engine running the unmodified function_app.py: every
dependency listed, broken ones named with the right verdict, Azure storage that goes away, the
checks each role's app runs, and no secret in any answer."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from health_support import agent, everything, free_port, requires_node, write

from kernel.adapters.azure_common import DEVELOPMENT_STORAGE
from kernel.cli import main as aos
from kernel.settings import APP_ROOT
from tests.realm.platform_support import ok, running, send_event, wait_until

ALL_BUS = ["bus:agent-events", "bus:agent-outputs", "bus:mcp-requests", "bus:mcp-responses"]
SUMMARY_KEYS = {"name", "kind", "required", "status", "latency_ms", "error"}


async def _anonymous(platform: Any, path: str) -> tuple[int, Any]:
    """GET a route without any key, as a platform probe does."""
    answer = await platform.host.http("GET", f"/api/{path}")
    return answer.status, json.loads(answer.body) if answer.body else None


def _by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {check["name"]: check for check in report["checks"]}


@requires_node
async def test_live_and_ready_answer_200_with_every_dependency_listed(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    write(configs, "keeper.json", agent("keeper", tools=[{"server": "everything", "tools": ["echo"]}]))
    write(configs, "everything.json", everything())
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        live = await _anonymous(platform, "health/live")
        ready_status, ready = await _anonymous(platform, "health/ready")
        details_without_key = await _anonymous(platform, "health/details")
        details = await ok(platform, "GET", "health/details")
        summary = await ok(platform, "GET", "health")

    assert live == (200, {"status": "ok", "roles": ["kernel", "realm", "mcp"]})
    assert ready_status == 200 and ready["status"] == "ok"
    assert [c["name"] for c in ready["checks"]] == [
        "storage:tables", "storage:blobs", *ALL_BUS, "model:offline", "mcp:everything"]
    assert all(set(check) == SUMMARY_KEYS and check["status"] == "ok" for check in ready["checks"])
    assert [c["required"] for c in ready["checks"]] == [True] * 6 + [False] * 2
    assert details_without_key[0] == 401, "details need a key (or a reader token with AOS_AUTH=entra)"

    checks = _by_name(details)
    assert details["status"] == "ok"
    assert checks["storage:tables"]["detail"]["backend"] == "embedded"
    assert checks["bus:agent-events"]["detail"]["target"] == "embedded engine bus"
    offline = checks["model:offline"]["detail"]
    assert offline["offline"] is True and "[offline]" in offline["label"]
    assert offline["agents"] == {"keeper": "offline: no inference endpoint is configured "
                                           "(AOS_INFERENCE_ENDPOINT is empty)"}
    server = checks["mcp:everything"]["detail"]
    assert server["state"] == "ready" and server["tool_count"] > 0
    # GET /api/health keeps the answer it always gave
    assert summary["status"] == "ok" and summary["configs"]["agents"] == 1 and summary["model"]["provider"] == "offline"


async def test_a_broken_mcp_server_and_a_dead_model_endpoint_leave_the_platform_ready_but_degraded(
        tmp_path: Path) -> None:
    dead = free_port()
    planted = {"AOS_TEST_LAB_URL": f"http://aos:planted-url-password@127.0.0.1:{dead}/v1?sig=planted-sas-signature",
               "AOS_TEST_LAB_KEY": "planted-api-key-value"}
    configs = tmp_path / "configs"
    write(configs / "endpoints", "lab.json", {
        "kind": "inference_endpoint", "id": "lab", "type": "vllm", "url": "${env:AOS_TEST_LAB_URL}",
        "base_model": "tiny-base", "auth": {"type": "key", "key": "${env:AOS_TEST_LAB_KEY}"}, "timeout_seconds": 5,
        "retries": {"max_attempts": 1}, "circuit_breaker": {"failure_threshold": 1, "cooldown_seconds": 3600}})
    write(configs, "keeper.json", agent("keeper", model={"endpoint": "lab"}))
    write(configs, "broken.json", {"kind": "mcp_server", "id": "broken", "transport": "stdio",
                                   "command": "aos-no-such-command", "args": []})
    async with running(tmp_path / "state", config_paths=str(configs), extra_settings=planted) as platform:
        before_status, before = await _anonymous(platform, "health/ready")
        before_details = await ok(platform, "GET", "health/details")
        await send_event(platform, "keeper", "ledger.entry", {"summary": "post the entry"})

        async def circuit_open() -> dict[str, Any] | None:
            report = await ok(platform, "GET", "health/details")
            return report if _by_name(report)["model:lab"]["error"] == "CircuitOpen" else None

        details = await wait_until(circuit_open, timeout=60, interval=0.2, what="the endpoint's breaker to open")
        after_status, after = await _anonymous(platform, "health/ready")
        summary = await ok(platform, "GET", "health")
        cli = await asyncio.to_thread(CliRunner().invoke, aos, ["health", "--url", platform.base_url,
                                                                "--key", platform.key])
        strict = await asyncio.to_thread(CliRunner().invoke, aos, ["health", "--strict", "--url", platform.base_url,
                                                                   "--key", platform.key])

    # before any call: the endpoint is not reachable over TCP and the server does not start
    assert before_status == 200 and before["status"] == "degraded"
    first = _by_name(before)
    assert (first["model:lab"]["status"], first["model:lab"]["error"]) == ("failed", "ConnectionRefusedError")
    assert (first["mcp:broken"]["status"], first["mcp:broken"]["error"]) == ("failed", "Failed")
    assert all(first[name]["status"] == "ok" for name in ["storage:tables", "storage:blobs", *ALL_BUS])

    # after a turn's model call failed, the breaker is open and readiness says so
    assert after_status == 200 and after["status"] == "degraded"
    checks = _by_name(details)
    model = checks["model:lab"]
    assert model["status"] == "failed" and model["detail"]["circuit"]["state"] == "open"
    assert model["message"].startswith("circuit open until ") and model["detail"]["agents"] == ["keeper"]
    assert model["detail"]["host"] == "${env:AOS_TEST_LAB_URL}"
    assert "command not found: 'aos-no-such-command'" in checks["mcp:broken"]["message"]
    assert checks["mcp:broken"]["detail"]["state"] in ("failed", "circuit-open")

    # aos health prints the report; degraded is ready (exit 0) unless --strict
    assert cli.exit_code == 0, cli.output
    assert cli.output.startswith("DEGRADED") and "mcp:broken" in cli.output and "CircuitOpen" in cli.output
    assert strict.exit_code == 1

    # no planted secret anywhere: not the URL's password or signature, not the key
    assert _by_name(before_details)["model:lab"]["message"].startswith(f"127.0.0.1:{dead} is not reachable over TCP")
    for text in (json.dumps(before), json.dumps(before_details), json.dumps(after), json.dumps(details),
                 json.dumps(summary), cli.output):
        assert "planted" not in text


async def test_azure_storage_going_away_makes_the_platform_not_ready(tmp_path: Path, azurite) -> None:
    connection, stop_azurite = azurite
    settings = {"AOS_STORAGE": "azure", "AzureWebJobsStorage": connection}
    (tmp_path / "configs").mkdir()
    async with running(tmp_path / "state", config_paths=str(tmp_path / "configs"), extra_settings=settings) as platform:
        up_status, up = await _anonymous(platform, "health/ready")
        up_details = await ok(platform, "GET", "health/details")
        stop_azurite()
        down_status, down = await _anonymous(platform, "health/ready?timeout=2")
        down_details = await ok(platform, "GET", "health/details?timeout=2")
        bad_timeout = await _anonymous(platform, "health/ready?timeout=soon")

    assert (up_status, up["status"]) == (200, "ok")
    assert _by_name(up_details)["storage:tables"]["detail"] == {
        "backend": "azure", "target": "account devstoreaccount1",
        "probe": "read entity (probe, probe) of table aoshealth: not found is the expected answer"}

    assert (down_status, down["status"]) == (503, "failed")
    checks = _by_name(down)
    assert checks["storage:tables"]["status"] == "failed" and checks["storage:blobs"]["status"] == "failed"
    assert checks["storage:tables"]["error"] and "message" not in checks["storage:tables"]
    assert all(checks[name]["status"] == "ok" for name in ALL_BUS)
    assert _by_name(down_details)["storage:blobs"]["message"]
    account_key = DEVELOPMENT_STORAGE.split("AccountKey=")[1].split(";")[0]
    assert account_key not in json.dumps(down_details) and account_key not in json.dumps(up_details)
    assert bad_timeout[0] == 400 and "timeout" in bad_timeout[1]["error"]


ROLE_SCRIPT = textwrap.dedent("""
    import asyncio, json, sys
    from kernel.platform import Platform

    async def main():
        async with Platform(state_dir=sys.argv[1], port=0, config_paths=sys.argv[2],
                            extra_settings={"AOS_APP_ROLES": sys.argv[3]}) as platform:
            answer = await platform.host.http("GET", "/api/health/ready")
            functions = sorted(spec.name for spec in platform.host.index.functions.values()
                               if spec.name.startswith("health"))
            print(json.dumps({"status": answer.status, "report": json.loads(answer.body), "functions": functions}))

    asyncio.run(main())
""")


def _ready_in_an_app_of(role: str, tmp_path: Path) -> dict[str, Any]:
    """``function_app.py`` imported with ``AOS_APP_ROLES=role`` in a fresh process (as in Azure,
    where each app runs alone), on the engine; its readiness answer."""
    configs = tmp_path / "configs"
    write(configs, "broken.json", {"kind": "mcp_server", "id": "broken", "transport": "stdio",
                                   "command": "aos-no-such-command", "args": []})
    result = subprocess.run([sys.executable, "-c", ROLE_SCRIPT, str(tmp_path / "state"), str(configs), role],
                            check=False, cwd=APP_ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_an_mcp_app_checks_its_servers_storage_and_the_topics_it_sends_to(tmp_path: Path) -> None:
    answer = _ready_in_an_app_of("mcp", tmp_path)
    assert answer["functions"] == ["health", "health_details", "health_live", "health_ready"]
    assert answer["status"] == 200 and answer["report"]["roles"] == ["mcp"]
    assert [c["name"] for c in answer["report"]["checks"]] == [
        "storage:tables", "storage:blobs", "bus:agent-events", "bus:mcp-responses", "mcp:broken"]
    assert answer["report"]["status"] == "degraded"


def test_a_kernel_app_checks_storage_and_the_events_topic_only(tmp_path: Path) -> None:
    answer = _ready_in_an_app_of("kernel", tmp_path)
    assert answer["functions"] == ["health", "health_details", "health_live", "health_ready"]
    assert [c["name"] for c in answer["report"]["checks"]] == ["storage:tables", "storage:blobs", "bus:agent-events"]
    assert (answer["status"], answer["report"]["status"]) == (200, "ok")
