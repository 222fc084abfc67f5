"""Tenant namespaces end to end, on the embedded engine running the unmodified function_app.py.

Two namespaces each with an agent of the same id keep separate state; an agent cannot reach
another namespace's agent or tool unless a route grants it (refusals audited and kept, never
dropped); namespace quotas refuse turns, model calls and agents, visibly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kernel.platform import Platform
from tests.namespaces.support import clear_of_the_minute_boundary, ledger_agent, namespace_doc, write_config
from tests.realm.platform_support import (
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

EVERYTHING = {"kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node",
              "args": ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]}








async def _audit(platform: Platform, chain: str) -> list[dict[str, Any]]:
    return (await ok(platform, "GET", f"audit?chain={chain}"))["records"]


async def _turn(platform: Platform, agent_id: str, data: Any, event_type: str = "ledger.entry") -> dict[str, Any]:
    sent = await send_event(platform, agent_id, event_type, data)
    await settle(platform)
    return await finished_turn(platform, agent_id, sent["turn_id"])


def _send(to: str) -> dict[str, Any]:
    """Event data that makes the offline provider call the context tool send_event."""
    return {"entry": "forward the ledger", "tool_call": {"server": "context", "tool": "send_event", "arguments": {
        "to": to, "type": "ledger.forwarded", "data": {"note": "from acme"}}}}


async def test_agents_of_the_same_id_in_two_namespaces_keep_separate_state(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme")
    ledger_agent(configs, "clerk")
    ledger_agent(configs, "clerk", "acme")
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        registered = platform.last_sync["configured"] + platform.last_sync["unchanged"]  # the start timer syncs too
        assert sorted(registered) == ["acme.clerk", "clerk"]
        ours = await _turn(platform, "acme.clerk", {"entry": "rent paid for the month of March"})
        listing = {a["id"]: a for a in (await ok(platform, "GET", "agents"))["agents"]}
        acme_audit = await _audit(platform, "acme.clerk")
        default_audit = await _audit(platform, "clerk")
        default_turns = (await ok(platform, "GET", "agents/clerk/turns"))["turns"]

    assert ours["outcome"] == "replied" and ours["agent_id"] == "acme.clerk"
    assert listing["acme.clerk"]["counters"]["turns"] == 1 and listing["clerk"]["counters"]["turns"] == 0
    assert default_turns == [] and default_audit == []
    assert [r["kind"] for r in acme_audit] == ["turn.decision"]


async def test_an_agent_cannot_send_to_another_namespace_until_a_route_grants_it(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme")
    ledger_agent(configs, "clerk", "acme")
    ledger_agent(configs, "controller")
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        refused = await _turn(platform, "acme.clerk", _send("default.controller"))
        await settle(platform)
        kept = [d for d in await deadletters(platform) if d["kind"] == "route-refused"]
        audit = [r for r in await _audit(platform, "acme.clerk") if r["kind"] == "route.refused"]
        before = (await ok(platform, "GET", "agents/controller"))["counters"]["turns"]

        namespace_doc(configs, "acme", routes=[{"to": "default", "agents": ["contr*"]}])
        await platform.sync()
        delivered = await _turn(platform, "acme.clerk", _send("default.controller"))
        await settle(platform)
        controller = await wait_until(lambda: _turns(platform, "controller"), what="the controller's turn")

    # the turn itself went on: the send is the agent's output, checked where outputs are routed
    assert refused["outcome"] == "replied" and refused["outputs"][-1]["to"] == "default.controller"
    [letter] = kept
    assert letter["message_id"] == refused["outputs"][-1]["id"]
    assert "namespace 'acme' has no route to agent 'controller' of namespace 'default'" in letter["reason"]
    [record] = audit
    assert record["actor"] == "namespace:acme" and record["subject"] == "controller"
    assert record["data"]["event_id"] == letter["message_id"]
    assert before == 0
    # with the route the same kind of event arrives, addressed by its resolved address
    assert delivered["outcome"] == "replied"
    [turn] = controller
    assert turn["event_type"] == "ledger.forwarded"


async def _turns(platform: Platform, agent_id: str) -> list[dict[str, Any]]:
    return (await ok(platform, "GET", f"agents/{agent_id}/turns"))["turns"]


async def test_a_reference_without_a_namespace_stays_in_the_senders_namespace(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme")
    ledger_agent(configs, "clerk", "acme")
    ledger_agent(configs, "auditor", "acme")
    ledger_agent(configs, "auditor")
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        await _turn(platform, "acme.clerk", _send("auditor"))
        await settle(platform)
        ours = await wait_until(lambda: _turns(platform, "acme.auditor"), what="acme's auditor's turn")
        theirs = await _turns(platform, "auditor")
    assert [t["event_type"] for t in ours] == ["ledger.forwarded"] and theirs == []


@requires_mcp_servers
async def test_an_agent_cannot_call_another_namespaces_tool_without_a_grant_and_route(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    write_config(configs, "everything.json", EVERYTHING)
    namespace_doc(configs, "acme", routes=[{"to": "default", "tools": ["everything.echo"]}])
    ledger_agent(configs, "clerk", "acme", tools=[{"server": "default.everything", "tools": ["echo"]}])
    ledger_agent(configs, "intruder", "acme")

    async def call(agent_id: str, server: str) -> tuple[int, Any]:
        return await platform.api("POST", f"mcp/servers/{server}/tools/echo/call",
                                  {"as": agent_id, "arguments": {"message": "hi"}})

    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        granted = await _turn(platform, "acme.clerk", {"entry": "echo", "tool_call": {
            "server": "default.everything", "tool": "echo", "arguments": {"message": "hi"}}})
        not_granted = await call("acme.intruder", "default.everything")
        own_name = await call("acme.intruder", "everything")  # acme declares no 'everything' server
        # the route withdrawn: the gateway refuses the grant the agent still holds
        namespace_doc(configs, "acme", description="no routes any more")
        await platform.sync()  # reads the configs again now
        withdrawn = await call("acme.clerk", "default.everything")
        denied = [r for r in await _audit(platform, "acme.intruder") if r["kind"] == "tool.denied"]
        clerk = [r for r in await _audit(platform, "acme.clerk") if r["kind"] in ("tool.call", "tool.denied")]

    [step] = tool_steps(granted)
    assert step["result"]["is_error"] is False and result_text(step) == "Echo: hi"
    assert not_granted[0] == 403 and "agent 'acme.intruder' is not granted MCP server 'default.everything'" \
        in not_granted[1]["error"]
    assert own_name[0] == 403 and "not granted MCP server 'everything'" in own_name[1]["error"]
    assert [r["data"]["server"] for r in denied] == ["default.everything", "everything"]
    assert withdrawn[0] == 403
    assert "namespace 'acme' has no route to tool 'everything.echo' of namespace 'default'" in withdrawn[1]["error"]
    assert [(r["kind"], r["subject"]) for r in clerk] == [("tool.call", "default.everything.echo"),
                                                          ("tool.denied", "default.everything.echo")]




async def test_the_turns_per_minute_quota_refuses_a_turn_visibly(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", quotas={"turns_per_minute": 1})
    ledger_agent(configs, "clerk", "acme")
    ledger_agent(configs, "clerk")  # the default namespace has no quota
    await clear_of_the_minute_boundary()
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        first = await _turn(platform, "acme.clerk", {"entry": "rent paid"})
        second = await _turn(platform, "acme.clerk", {"entry": "office supplies bought"})
        unlimited = [await _turn(platform, "clerk", {"entry": f"entry {n}"}) for n in range(2)]
        audit = [r for r in await _audit(platform, "acme.clerk") if r["kind"] == "quota.refused"]

    assert first["outcome"] == "replied"
    assert second["outcome"] == "refused" and second["reply"] is None
    assert second["error"].startswith("refused by quota: namespace 'acme' quota: its agents have begun 1 turns")
    [refusal] = second["refusals"]
    assert refusal["rule"] == "quota.turns_per_minute" and (refusal["limit"], refusal["observed"]) == (1, 1)
    assert refusal["namespace"] == "acme" and second["steps"][-1]["kind"] == "policy"
    assert not [s for s in second["steps"] if s["kind"] == "model"]
    [record] = audit
    assert record["actor"] == "namespace:acme" and record["subject"] == "quota.turns_per_minute"
    assert record["data"]["turn_id"] == second["turn_id"]
    assert [t["outcome"] for t in unlimited] == ["replied", "replied"]


async def test_a_turn_whose_policy_activity_runs_again_is_counted_once(tmp_path: Path) -> None:
    from realm_of_agents.activities import policy  # the activity the Functions host runs again on a retry

    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", quotas={"turns_per_minute": 2})
    ledger_agent(configs, "clerk", "acme")
    await clear_of_the_minute_boundary()
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        first = await _turn(platform, "acme.clerk", {"entry": "rent paid"})
        # the first turn's policy read runs again (a retry, or a host that died after counting)
        again = [await policy({"agent_id": "acme.clerk", "turn_id": first["turn_id"], "begin": True})
                 for _ in range(2)]
        second = await _turn(platform, "acme.clerk", {"entry": "office supplies bought"})
        third = await _turn(platform, "acme.clerk", {"entry": "printer paper bought"})
        audit = [r for r in await _audit(platform, "acme.clerk") if r["kind"] == "quota.refused"]

    assert [a.get("quota_refused") for a in again] == [None, None]  # the same turn: admitted, not counted
    assert (first["outcome"], second["outcome"]) == ("replied", "replied")  # the second slot was still free
    assert third["outcome"] == "refused" and third["refusals"][0]["observed"] == 2
    assert [r["data"]["turn_id"] for r in audit] == [third["turn_id"]]


async def test_the_tokens_per_day_quota_refuses_the_next_model_call(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", quotas={"tokens_per_day": 5})
    ledger_agent(configs, "clerk", "acme")
    ledger_agent(configs, "bookkeeper", "acme")
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        first = await _turn(platform, "acme.clerk", {"entry": "rent paid for the month of March"})
        # the namespace's budget is shared: another agent of it is refused too
        second = await _turn(platform, "acme.bookkeeper", {"entry": "office supplies bought"})
        audit = [r for r in await _audit(platform, "acme.bookkeeper") if r["kind"] == "quota.refused"]

    spent = first["usage"]["prompt_tokens"] + first["usage"]["completion_tokens"]
    assert first["outcome"] == "replied" and spent >= 5
    assert second["outcome"] == "refused"
    step = second["steps"][-1]
    assert step["kind"] == "policy" and step["rule"] == "quota.tokens_per_day"
    assert (step["limit"], step["observed"], step["call"]) == (5, spent, "turn")
    assert "namespace 'acme' quota: its agents have used" in second["error"]
    [record] = audit
    assert record["actor"] == "namespace:acme" and record["data"]["observed"] == spent


async def test_the_agents_quota_refuses_the_extra_agent_at_sync(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", quotas={"agents": 1})
    ledger_agent(configs, "alpha", "acme")
    ledger_agent(configs, "beta", "acme")
    async with running(tmp_path / "state", config_paths=str(configs)) as platform:
        report = platform.last_sync
        again = await platform.sync()
        listing = {a["id"]: a for a in (await ok(platform, "GET", "agents"))["agents"]}
        sent = await send_event(platform, "acme.beta", "ledger.entry", {"entry": "rent"})
        await settle(platform)
        turn = await archived_turn(platform, "acme.beta", sent["turn_id"])
        audit = [r for r in await _audit(platform, "acme.beta") if r["kind"] == "quota.refused"]
        problems = [p for p in platform.configs.problems if p.code == "quota-agents"]

    # (the sync timer also runs at start, so either sync may have configured alpha)
    assert "acme.alpha" in report["configured"] + report["unchanged"] and "acme.beta" not in report["configured"]
    assert list(report["refused"]) == ["acme.beta"] and "allows 1 agent" in report["refused"]["acme.beta"]
    assert again["refused"] == report["refused"]
    [record] = audit  # once, not at every sync
    assert record["actor"] == "namespace:acme" and record["subject"] == "quota.agents"
    assert len(problems) == 1
    assert listing["acme.alpha"]["registered"] is True and listing["acme.beta"]["registered"] is False
    # an event for it does not register it behind the sync's back
    assert turn["outcome"] == "failed" and "never registered" in turn["error"]


TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
AUDIENCE = "api://aos-namespaces"


async def test_the_api_shows_a_token_caller_only_the_namespaces_it_may_use(tmp_path: Path) -> None:
    from tests.governance.loopback_identity import loopback_identity

    configs = tmp_path / "configs"
    namespace_doc(configs, "acme", access={"roles": ["AOS.Namespace.Acme"], "groups": ["acme-group-id"]})
    ledger_agent(configs, "clerk")
    ledger_agent(configs, "clerk", "acme")
    async with loopback_identity(TENANT, AUDIENCE, kid="ns") as (jwks_url, token):
        entra = {"AOS_AUTH": "entra", "AOS_AUTH_TENANT_ID": TENANT, "AOS_AUTH_AUDIENCE": AUDIENCE,
                 "AOS_AUTH_JWKS_URL": jwks_url}
        async with running(tmp_path / "state", config_paths=str(configs), extra_settings=entra) as platform:
            async def call(bearer: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
                # the key passes the host when function_app.py was imported in keys mode; the token decides
                result = await platform.host.http(method, f"/api/{path}", json=body, headers={
                    "x-functions-key": platform.key, "Authorization": f"Bearer {bearer}"})
                return result.status, json.loads(result.body or b"null")

            outsider, tenant = token("AOS.Admin"), token("AOS.Admin", "AOS.Namespace.Acme")
            sent = await call(tenant, "POST", "agents/acme.clerk/events", {"type": "ledger.entry", "data": "rent"})
            await settle(platform)
            member = token("AOS.Admin", groups=["acme-group-id"])
            seen = {name: sorted(a["id"] for a in (await call(bearer, "GET", "agents"))[1]["agents"])
                    for name, bearer in (("outsider", outsider), ("tenant", tenant), ("member", member))}
            hidden = await call(outsider, "GET", "agents/acme.clerk")
            missing = await call(outsider, "GET", "agents/acme.nobody")
            hidden_send = await call(outsider, "POST", "agents/acme.clerk/events", {"type": "ledger.entry"})
            hidden_turns = await call(outsider, "GET", "agents/acme.clerk/turns")
            shown = await call(tenant, "GET", "agents/acme.clerk")
            chains = {name: (await call(bearer, "GET", "audit"))[1]["chains"]
                      for name, bearer in (("outsider", outsider), ("tenant", tenant))}
            hidden_chain = await call(outsider, "GET", "audit?chain=acme.clerk")

    assert sent[0] == 202
    assert seen == {"outsider": ["clerk"], "tenant": ["acme.clerk", "clerk"], "member": ["acme.clerk", "clerk"]}
    # hidden looks exactly like absent: 404 with the same message shape, never 403
    assert hidden == (404, {"error": "no agent 'acme.clerk' is declared in config"})
    assert missing == (404, {"error": "no agent 'acme.nobody' is declared in config"})
    assert hidden_send[0] == 404 and hidden_turns[0] == 404
    assert shown[0] == 200 and shown[1]["counters"]["turns"] == 1
    assert "acme.clerk" in chains["tenant"] and "acme.clerk" not in chains["outsider"]
    assert hidden_chain[0] == 404
