"""Workflows inside namespaces, end to end on the embedded engine running the unmodified function_app.py:
a quota refusal shows on the run (API and `aos workflows status`) and in the audit log; a route
withdrawn while a run is in flight fails its next agent step, audited; the workflow routes show a
token's caller only the namespaces it may see."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from kernel.cli import main as aos
from kernel.config import load_configs
from kernel.workflows import ids
from realm_of_agents.ids import turn_instance_id
from tests.namespaces.support import clear_of_the_minute_boundary, ledger_agent, namespace_doc
from tests.realm.platform_support import REPO, ok, recent_turns, requires_mcp_servers, running, wait_until
from tests.workflows.support import finished, start, step_status, steps, write_workflow








def _step(step_id: str, agent: str, **extra: Any) -> dict[str, Any]:
    return {"id": step_id, "agent": agent, "event": "ledger.entry", "data": {"entry": f"entry for {step_id}"}, **extra}




async def test_a_quota_refusal_is_visible_on_the_run_and_in_the_audit_log(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", quotas={"turns_per_minute": 1})
    ledger_agent(configs, "clerk", "acme")
    write_workflow(configs / "acme", {"id": "books", "namespace": "acme", "steps": [
        _step("first", "clerk"), _step("second", "clerk", needs=["first"])]})
    await clear_of_the_minute_boundary()
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        run_id = await start(platform, "acme.books", {})
        view = await finished(platform, run_id)
        audit = (await ok(platform, "GET", "audit?chain=acme.clerk"))["records"]
        shown = await asyncio.to_thread(CliRunner().invoke, aos, [
            "workflows", "status", run_id, "--url", platform.base_url, "--key", platform.key])

    by_id = steps(view)
    assert view["status"] == "failed" and view["failed_step"] == "second", view
    assert by_id["first"]["status"] == "completed"
    error = by_id["second"]["error"]
    assert error.startswith("agent 'clerk' refused: refused by quota: namespace 'acme' quota: its agents have begun "
                            "1 turns this minute (limit 1 per minute)"), error
    assert view["error"] == f"step 'second' failed: {error}"
    refused = [r for r in audit if r["kind"] == "quota.refused"]
    [record] = refused
    assert record["subject"] == "quota.turns_per_minute" and record["actor"] == "namespace:acme"
    assert record["data"]["turn_id"] == turn_instance_id("acme.clerk", ids.attempt_id(run_id, "second", 1))
    assert shown.exit_code == 0, shown.output
    assert "FAILED" in shown.output and "refused by quota: namespace 'acme' quota" in shown.output, shown.output


def _relay(configs: Path) -> None:
    """acme's workflow that waits for 'go', then asks the default namespace's clerk (through a route)."""
    write_workflow(configs / "acme", {"id": "relay", "namespace": "acme", "steps": [
        {"id": "hold", "wait": {"event": "go"}, "timeout_seconds": 120},
        _step("ask", "default.clerk", needs=["hold"], retry={"max_attempts": 3, "backoff_seconds": 0.2})]})


async def test_a_route_withdrawn_mid_run_fails_the_next_agent_step_and_is_audited(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", routes=[{"to": "default", "agents": ["clerk"]}])
    ledger_agent(configs, "clerk")
    _relay(configs)
    async with running(tmp_path / "state", config_paths=str(configs), watch_interval=0.2) as platform:
        routed, withdrawn = await start(platform, "acme.relay", {}), await start(platform, "acme.relay", {})
        for run_id in (routed, withdrawn):
            await step_status(platform, run_id, "hold", "running")
        await ok(platform, "POST", f"workflows/runs/{routed}/events/go", {"data": None}, 202)
        done = await finished(platform, routed)
        namespace_doc(configs, "acme")  # the route is gone (the workflow, now in error, stays as it last loaded)

        async def reloaded() -> bool:
            return not platform.configs.namespaces["acme"].routes

        await wait_until(reloaded, timeout=10, what="the configs without the route")
        problems = [p.render() for p in platform.configs.errors if p.code == "cross-namespace"]
        await ok(platform, "POST", f"workflows/runs/{withdrawn}/events/go", {"data": None}, 202)
        refused = await finished(platform, withdrawn)
        audit = (await ok(platform, "GET", "audit?chain=acme.workflow:relay"))["records"]
        turns = await recent_turns(platform, "clerk")

    assert done["status"] == "completed" and steps(done)["ask"]["output"]["agent"] == "clerk"
    assert any("relay.json" in problem and "no route to agent 'clerk'" in problem for problem in problems), problems
    ask = steps(refused)["ask"]
    assert refused["status"] == "failed" and ask["status"] == "failed"
    assert ask["attempts"] == 1  # a refusal is not retried: the route decides, not luck
    assert ask["error"] == ("not sent: workflow 'acme.relay' may not send 'ledger.entry' to agent 'clerk': namespace "
                            "'acme' has no route to agent 'clerk' of namespace 'default' (add routes: [{to: default, "
                            "agents: ['clerk']}] to namespace 'acme')")
    [record] = [r for r in audit if r["kind"] == "route.refused"]
    assert record["actor"] == "namespace:acme" and record["subject"] == "clerk"
    assert record["data"]["event_id"] == ids.attempt_id(withdrawn, "ask", 1)
    assert [t["turn_id"] for t in turns] == [steps(done)["ask"]["output"]["turn_id"]]  # the refused event never went


TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
AUDIENCE = "api://aos-namespace-workflows"


async def test_the_workflow_routes_show_a_token_caller_only_the_namespaces_it_may_see(tmp_path: Path) -> None:
    from tests.governance.loopback_identity import loopback_identity

    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", access={"roles": ["AOS.Namespace.Acme"]})
    ledger_agent(configs, "clerk", "acme")
    ledger_agent(configs, "clerk")
    waiting = [{"id": "hold", "wait": {"event": "go"}, "timeout_seconds": 120}]
    write_workflow(configs / "acme", {"id": "books", "namespace": "acme", "steps": waiting})
    write_workflow(configs / "default", {"id": "open", "steps": waiting})
    async with loopback_identity(TENANT, AUDIENCE, kid="nswf") as (jwks_url, token):
        entra = {"AOS_AUTH": "entra", "AOS_AUTH_TENANT_ID": TENANT, "AOS_AUTH_AUDIENCE": AUDIENCE,
                 "AOS_AUTH_JWKS_URL": jwks_url}
        async with running(tmp_path / "state", config_paths=str(configs), extra_settings=entra) as platform:
            async def call(bearer: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
                result = await platform.host.http(method, f"/api/{path}", json=body, headers={
                    "x-functions-key": platform.key, "Authorization": f"Bearer {bearer}"})
                return result.status, json.loads(result.body or b"null")

            outsider, tenant = token("AOS.Admin"), token("AOS.Admin", "AOS.Namespace.Acme")
            hidden_start = await call(outsider, "POST", "workflows/acme.books/start", {"input": {}})
            started = await call(tenant, "POST", "workflows/acme.books/start", {"input": {}})
            run_id = started[1]["run_id"]
            open_run = (await call(outsider, "POST", "workflows/open/start", {"input": {}}))[1]["run_id"]
            seen = {name: sorted(w["id"] for w in (await call(bearer, "GET", "workflows"))[1]["workflows"])
                    for name, bearer in (("outsider", outsider), ("tenant", tenant))}
            runs = {name: sorted(r["run_id"] for r in (await call(bearer, "GET", "workflows/runs"))[1]["runs"])
                    for name, bearer in (("outsider", outsider), ("tenant", tenant))}
            filtered = await call(outsider, "GET", "workflows/runs?workflow=acme.books")
            hidden_run = await call(outsider, "GET", f"workflows/runs/{run_id}")
            hidden_event = await call(outsider, "POST", f"workflows/runs/{run_id}/events/go", {})
            hidden_cancel = await call(outsider, "POST", f"workflows/runs/{run_id}/cancel", {})
            shown = await call(tenant, "GET", f"workflows/runs/{run_id}")
            cancelled = await call(tenant, "POST", f"workflows/runs/{run_id}/cancel", {})

    assert hidden_start == (404, {"error": "no workflow 'acme.books' is declared in config"})
    assert started[0] == 202
    assert seen == {"outsider": ["open"], "tenant": ["acme.books", "open"]}
    assert runs == {"outsider": [open_run], "tenant": sorted([open_run, run_id])}
    assert filtered == (200, {"runs": []})
    # hidden looks exactly like absent: 404 with the same message, never 403
    assert hidden_run == (404, {"error": f"no workflow run '{run_id}'"})
    assert hidden_event[0] == 404 and hidden_cancel == (404, {"error": f"no workflow run '{run_id}'"})
    assert shown[0] == 200 and shown[1]["workflow"] == "acme.books"
    assert cancelled[0] == 202


async def test_aos_send_namespace_broadcasts_in_that_namespace_and_starts_only_routed_workflows(
        tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", routes=[{"to": "default", "workflows": ["intake"]}])
    ledger_agent(configs, "clerk", "acme")
    ledger_agent(configs, "clerk")
    quick = [{"id": "note", "wait": {"event": "never", "on_timeout": "continue"}, "timeout_seconds": 1}]
    for workflow_id in ("intake", "other"):
        write_workflow(configs / "default", {"id": workflow_id, "trigger": {"events": ["ledger.closed"]}, "steps": quick})
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        def send(*extra: str, body: str) -> Any:
            return CliRunner().invoke(aos, ["send", "agent-events", "--body", body, "--subject", "ledger.closed",
                                            "-p", "type=ledger.closed", "-p", "source=erp", *extra,
                                            "--url", platform.base_url, "--key", platform.key])

        envelope = {"id": "close-1", "type": "ledger.closed", "source": "erp", "data": {"period": "2026-03"}}
        sent = await asyncio.to_thread(send, "--namespace", "acme", body=json.dumps(envelope))
        refused = await asyncio.to_thread(send, "--namespace", "acme", body="not an envelope")
        intake_id = ids.event_run_id("intake", "close-1")

        async def exists() -> bool:
            return (await platform.api("GET", f"workflows/runs/{intake_id}"))[0] == 200

        await wait_until(exists, timeout=20, what="the triggered run")
        intake = await finished(platform, intake_id)
        await platform.wait_idle()
        ours = await recent_turns(platform, "acme.clerk")
        theirs = await recent_turns(platform, "clerk")
        other = await platform.api("GET", f"workflows/runs/{ids.event_run_id('other', 'close-1')}")

    assert sent.exit_code == 0, sent.output
    assert refused.exit_code != 0 and "the body must be a JSON object" in refused.output
    assert intake["status"] == "completed" and intake["trigger"]["event_id"] == "close-1"
    assert len(ours) == 1 and theirs == []  # the broadcast stayed in acme
    assert other[0] == 404  # not routed: acme's event does not start default's 'other'


def _tool_relay(configs: Path, tool: str, grant: dict[str, Any]) -> Path:
    """acme's workflow calling ``tool`` under ``grant``, beside the default namespace's 'everything' server."""
    (configs / "mcp_configs").mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "mcp_configs" / "everything.yaml", configs / "mcp_configs" / "everything.yaml")
    return write_workflow(configs / "acme", {"id": "echoes", "namespace": "acme", "tools": [grant], "steps": [
        {"id": "say", "tool": tool, "arguments": {"message": "hello from acme"}, "outputs": {"said": "{{ result.text }}"}}]})


@requires_mcp_servers
async def test_a_tool_step_reaches_another_namespaces_server_through_a_route(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", routes=[{"to": "default", "tools": ["everything.echo"]}])
    _tool_relay(configs, "default.everything.echo", {"server": "default.everything", "tools": ["echo"]})
    assert load_configs([configs]).ok
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        run_id = await start(platform, "acme.echoes", {})
        view = await finished(platform, run_id, timeout=90)
        audit = (await ok(platform, "GET", "audit?chain=" + ids.caller("acme.echoes")))["records"]
    assert view["status"] == "completed", view
    assert "hello from acme" in steps(view)["say"]["output"]["said"]
    [call] = [record for record in audit if record["kind"] == "tool.call"]
    assert call["data"]["server"] == "default.everything" and call["data"]["tool"] == "echo"


def test_a_cross_namespace_tool_step_is_checked_against_the_grant_and_the_route(tmp_path: Path) -> None:
    ungranted = tmp_path / "ungranted"
    namespace_doc(ungranted, "acme", routes=[{"to": "default", "tools": ["everything.echo"]}])
    _tool_relay(ungranted, "default.everything.get-sum", {"server": "default.everything", "tools": ["echo"]})
    [problem] = load_configs([ungranted]).errors
    assert problem.path == "$.steps[0].tool"
    assert "not granted tool 'get-sum' of MCP server 'default.everything'" in problem.message

    unrouted = tmp_path / "unrouted"
    namespace_doc(unrouted, "acme", routes=[{"to": "default", "agents": ["clerk"]}])
    _tool_relay(unrouted, "default.everything.echo", {"server": "default.everything", "tools": ["echo"]})
    problems = [p for p in load_configs([unrouted]).errors if p.path == "$.steps[0].tool"]
    assert problems and problems[0].message.startswith("cross-namespace reference:"), problems
