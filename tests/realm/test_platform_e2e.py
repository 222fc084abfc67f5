"""End to end through the real function_app.py on the embedded engine: what the README promises.

Each test starts the whole platform (kernel, realm and MCP roles) on a fresh state folder, drives
it through its HTTP API or its Service Bus topics, and checks the outcome where it lands: agent
state, the turn archive, bus subscriptions, the dead-letter store. The offline provider answers
unless a test points the platform at the fake OpenAI-compatible server.
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path

from kernel.config.store import default_store
from kernel.messages import Envelope
from platform_support import (
    EVENTS_REALM,
    OUTPUTS_KERNEL,
    REPO,
    agent,
    archived_turn,
    deadletters,
    drain,
    observe,
    ok,
    recent_turns,
    requires_mcp_servers,
    result_text,
    running,
    send_event,
    settle,
    tool_steps,
    wait_until,
)
from tests.inference.fake_openai import FakeOpenAI

SAMPLE_AGENTS = {"ceo", "cfo", "coo", "cto", "operations", "acme.cfo"}  # acme.cfo: agent_configs/acme/


async def test_start_registers_every_sample_agent(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        configs = default_store().current()
        assert set(configs.agents) == SAMPLE_AGENTS
        assert sorted(platform.last_sync["configured"]) == sorted(SAMPLE_AGENTS)

        listing = {a["id"]: a for a in (await ok(platform, "GET", "agents"))["agents"]}
        assert set(listing) == SAMPLE_AGENTS
        for agent_id, row in listing.items():
            assert row["registered"] is True and row["declared"] is True, row
            assert row["status"] == "sleeping", row
            assert row["config_version"] == configs.source("agent", agent_id).version, row
            assert row["counters"]["turns"] == 0

        cfo = await agent(platform, "cfo")
        assert cfo["purpose"] == configs.agents["cfo"].purpose
        assert [(g["id"], g["status"], g["progress"]) for g in cfo["goals"]] == [
            ("budget-adherence", "active", 0), ("weekly-forecast", "active", 0)]
        assert cfo["memory"] == {"window": [], "summary": [], "summarized_turns": 0, "dropped_summary_lines": 0,
                                 "facts": []}
        assert cfo["inbox"] == 0 and cfo["current_event"] is None


async def test_an_event_is_answered_archived_and_its_reply_published(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        outputs = observe(platform, "agent-outputs")
        sent = await send_event(platform, "cfo", "invoice.received",
                                {"vendor": "Contoso", "amount": 1200, "note": "invoice for budget review"})
        await settle(platform)

        record = await archived_turn(platform, "cfo", sent["turn_id"])
        assert record["outcome"] == "replied"
        assert record["reply"].startswith("[offline]")
        assert record["alignment"]["aligned"] is True and record["alignment"]["method"] == "lexical"
        assert record["provider"] == "offline" and record["error"] is None
        assert record["event"]["id"] == sent["event_id"] and record["event"]["source"] == "api"

        [reply] = record["outputs"]
        assert reply["type"] == "agent.reply" and reply["to"] == "api" and reply["source"] == "cfo"
        assert reply["causation_id"] == sent["event_id"]
        assert reply["data"] == {"turn_id": sent["turn_id"], "text": record["reply"], "outcome": "replied"}

        # The envelope went out on agent-outputs, and the kernel's router took it off its subscription.
        [published] = drain(platform, outputs)
        assert published.message_id == reply["id"] and published.subject == "agent.reply"
        # as archived, but carrying the publish span's trace context (the router's span is its child)
        sent_out, archived = Envelope.from_json(published.body), Envelope.model_validate(reply)
        assert sent_out.model_dump(exclude={"traceparent"}) == archived.model_dump(exclude={"traceparent"})
        assert sent_out.traceparent.split("-")[1] == record["event"]["traceparent"].split("-")[1]
        bus = platform.host.bus
        assert bus.active_count(OUTPUTS_KERNEL) == 0 and bus.dead_letter_count(OUTPUTS_KERNEL) == 0
        assert bus.active_count(EVENTS_REALM) == 0 and bus.dead_letter_count(EVENTS_REALM) == 0
        assert await deadletters(platform) == []

        cfo = await agent(platform, "cfo")
        assert cfo["status"] == "sleeping" and cfo["counters"]["turns"] == 1
        assert [t["turn_id"] for t in cfo["memory"]["window"]] == [sent["turn_id"]]


async def test_an_out_of_scope_event_is_declined_with_the_reason(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        sent = await send_event(platform, "cto", "pricing.change.requested",
                                {"topic": "pricing", "note": "raise the pricing of the enterprise plan"})
        await settle(platform)

        record = await archived_turn(platform, "cto", sent["turn_id"])
        assert record["outcome"] == "declined"
        assert record["alignment"]["out_of_scope"] == "pricing"
        assert "'pricing'" in record["decision"]["rationale"] and "outside" in record["decision"]["rationale"]
        assert [s for s in record["steps"] if s["kind"] == "model"] == []  # no model call for a declined event
        [decline] = record["outputs"]
        assert decline["type"] == "agent.declined" and "'pricing'" in decline["data"]["text"]

        cto = await agent(platform, "cto")
        assert cto["counters"]["declined"] == 1 and cto["counters"]["turns"] == 1
        assert cto["status"] == "sleeping"


@requires_mcp_servers
async def test_a_requested_tool_call_runs_through_the_real_mcp_server(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        echo = await send_event(platform, "cto", "incident.followup", {
            "summary": "check the incident tooling",
            "tool_call": {"server": "everything", "tool": "echo", "arguments": {"message": "hi"}}})
        write = await send_event(platform, "cto", "incident.followup", {
            "summary": "write the incident notes",
            "tool_call": {"server": "filesystem", "tool": "write_file",
                          "arguments": {"path": "workspace/not-granted.txt", "content": "x"}}})
        await settle(platform)

        record = await archived_turn(platform, "cto", echo["turn_id"])
        assert record["outcome"] == "replied"
        [step] = tool_steps(record)
        assert (step["server"], step["tool"], step["arguments"]) == ("everything", "echo", {"message": "hi"})
        assert step["result"]["is_error"] is False and result_text(step) == "Echo: hi"
        assert "Echo: hi" in record["reply"]
        assert record["tool_calls"] == 1

        # The offline model is not offered a tool the agent is not granted, so it never asks for it.
        record = await archived_turn(platform, "cto", write["turn_id"])
        assert tool_steps(record) == [] and record["tool_calls"] == 0
        assert "filesystem__write_file" not in record["steps"][0]["offered_tools"]
        assert "not offered; no call was made" in record["reply"]
        assert not (REPO / "workspace" / "not-granted.txt").exists()
        assert (await agent(platform, "cto"))["counters"]["tool_calls"] == 1


@requires_mcp_servers
async def test_a_model_asking_for_a_tool_the_agent_is_not_granted_is_denied(tmp_path: Path) -> None:
    target = REPO / "workspace" / f"denied-{uuid.uuid4().hex}.txt"
    async with FakeOpenAI() as model:
        model.reply('{"aligned": true, "reason": "an incident follow-up"}')
        model.reply("", tool_calls=[{"name": "filesystem__write_file",
                                     "arguments": {"path": str(target), "content": "should never be written"}}])
        model.reply("I could not write the notes.")
        async with running(tmp_path / "state", extra_settings={
                "AOS_INFERENCE_ENDPOINT": model.base_url, "AOS_INFERENCE_MODEL": "fake-model"}) as platform:
            sent = await send_event(platform, "cto", "incident.followup", {"summary": "write the incident notes"})
            await settle(platform)
            record = await archived_turn(platform, "cto", sent["turn_id"])

    assert record["outcome"] == "replied" and record["alignment"]["method"] == "model"
    [step] = tool_steps(record)
    assert (step["server"], step["tool"]) == ("filesystem", "write_file")
    assert step["result"]["is_error"] is True and step["result"]["error"] == "ToolDenied"
    assert result_text(step).startswith("denied: agent 'cto' is granted only")
    assert "not 'write_file'" in result_text(step)
    assert not target.exists()
    # The model saw the denial as the tool's result.
    assert "ERROR: denied:" in json.dumps(model.requests[-1]["messages"])


@requires_mcp_servers
async def test_context_tools_remember_facts_and_send_events_to_other_agents(tmp_path: Path) -> None:
    fact = "The on-call rota changes to weekly handovers on Mondays"
    async with running(tmp_path / "state") as platform:
        events = observe(platform, "agent-events")
        remembered = await send_event(platform, "cto", "incident.review", {
            "summary": "incident review outcome",
            "tool_call": {"server": "context", "tool": "remember_fact", "arguments": {"fact": fact}}})
        await settle(platform)
        record = await archived_turn(platform, "cto", remembered["turn_id"])
        assert record["outcome"] == "replied" and record["facts"] == [fact]
        assert fact in (await agent(platform, "cto"))["memory"]["facts"]

        drain(platform, events)
        asked = await send_event(platform, "cto", "incident.costs", {
            "summary": "incident costs need budget",
            "tool_call": {"server": "context", "tool": "send_event", "arguments": {
                "to": "cfo", "type": "budget.review.requested",
                "data": {"reason": "incident overtime costs", "amount": 5000}}}})
        await settle(platform)

        record = await archived_turn(platform, "cto", asked["turn_id"])
        assert record["outcome"] == "replied"
        sent_event = next(o for o in record["outputs"] if o["type"] == "budget.review.requested")
        assert sent_event["to"] == "cfo" and sent_event["source"] == "cto"

        # The kernel's router forwarded it to agent-events (same message id) ...
        forwarded = [m for m in drain(platform, events) if m.message_id == sent_event["id"]]
        assert len(forwarded) == 1 and forwarded[0].to == "cfo"

        # ... and the CFO ran a turn caused by it.
        [row] = await recent_turns(platform, "cfo")
        cfo_turn = await archived_turn(platform, "cfo", row["turn_id"])
        assert cfo_turn["event"]["id"] == sent_event["id"]
        assert cfo_turn["event"]["source"] == "cto"
        assert cfo_turn["event"]["causation_id"] == asked["event_id"]
        assert cfo_turn["event"]["data"] == {"reason": "incident overtime costs", "amount": 5000}
        assert cfo_turn["outcome"] == "replied"
        # The CFO's reply to the CTO is terminal: it does not wake the CTO again.
        assert (await agent(platform, "cto"))["counters"]["turns"] == 2


async def test_a_broadcast_wakes_the_subscribers_only(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        envelope = Envelope(type="incident.opened", source="monitoring",
                            data={"service": "payments", "severity": 1, "summary": "payments outage"})
        await platform.host.send("agent-events", envelope.to_json(), message_id=envelope.id, subject=envelope.type)
        await settle(platform)

        [turn] = await recent_turns(platform, "cto")
        assert turn["event_id"] == envelope.id and turn["outcome"] == "replied"
        for other in SAMPLE_AGENTS - {"cto"}:
            assert await recent_turns(platform, other) == [], other
            assert (await agent(platform, other))["counters"]["turns"] == 0
        assert await deadletters(platform) == []


async def test_a_paused_agent_queues_events_and_works_them_off_in_order_on_resume(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        paused = await ok(platform, "POST", "agents/cfo/pause")
        assert paused["status"] == "paused"
        first = await send_event(platform, "cfo", "invoice.received", {"vendor": "Northwind", "amount": 10})
        second = await send_event(platform, "cfo", "invoice.received", {"vendor": "Litware", "amount": 20})
        await settle(platform)

        cfo = await agent(platform, "cfo")
        assert cfo["status"] == "paused" and cfo["inbox"] == 2
        assert cfo["queued_events"] == [first["event_id"], second["event_id"]]
        assert cfo["counters"]["turns"] == 0 and await recent_turns(platform, "cfo") == []

        resumed = await ok(platform, "POST", "agents/cfo/resume")
        assert resumed["status"] == "sleeping"
        await settle(platform)

        cfo = await agent(platform, "cfo")
        assert cfo["status"] == "sleeping" and cfo["inbox"] == 0 and cfo["counters"]["turns"] == 2
        rows = list(reversed(await recent_turns(platform, "cfo")))
        assert [r["event_id"] for r in rows] == [first["event_id"], second["event_id"]]
        one = await archived_turn(platform, "cfo", first["turn_id"])
        two = await archived_turn(platform, "cfo", second["turn_id"])
        assert one["finished"] <= two["started"]


async def test_memory_search_finds_the_archived_turn(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        sent = await send_event(platform, "cfo", "invoice.received", {"vendor": "Fabrikam", "amount": 4200})
        other = await send_event(platform, "cfo", "budget.checked", {"department": "marketing"})
        await settle(platform)

        found = await ok(platform, "GET", "agents/cfo/memory?q=Fabrikam")
        assert [r["turn_id"] for r in found["results"]] == [sent["turn_id"]]
        assert found["results"][0]["event_id"] == sent["event_id"]
        assert [h["turn_id"] for h in found["hot_memory"]] == [sent["turn_id"]]  # also in the hot window
        assert other["turn_id"] not in json.dumps(found["results"])
        missing = await ok(platform, "GET", "agents/cfo/memory?q=Tailspin")
        assert missing["results"] == []


async def test_a_sync_pages_through_the_registry_and_writes_only_what_changed(tmp_path: Path, monkeypatch) -> None:
    from kernel import table_pages
    from kernel.adapters.embedded_table import EmbeddedTableStore
    from realm_of_agents import registration

    monkeypatch.setattr(table_pages, "PAGE_ROWS", 2)  # six agents: the registry is read in three pages
    configs = tmp_path / "agent_configs"
    shutil.copytree(REPO / "agent_configs", configs)
    paths = f"{configs},{REPO / 'mcp_configs'}"
    async with running(tmp_path / "state", config_paths=paths, watch_interval=3600) as platform:
        async def etags() -> dict[str, str]:
            tables = EmbeddedTableStore(tmp_path / "state" / "tables.sqlite")
            try:
                return {row["RowKey"]: row["etag"] for row in await tables.query(registration.TABLE, registration.PARTITION)}
            finally:
                await tables.close()

        registered = await etags()
        assert set(registered) == SAMPLE_AGENTS
        report = await ok(platform, "POST", "agents/sync")
        assert report["configured"] == [] and report["unchanged"] == sorted(SAMPLE_AGENTS)
        assert await etags() == registered, "an unchanged agent's registry row is not written again"

        (configs / "operations.yaml").unlink()
        scout = (configs / "coo.yaml").read_text().replace("id: coo", "id: scout", 1)
        (configs / "scout.yaml").write_text(scout)
        report = await ok(platform, "POST", "agents/sync")
        assert report["retired"] == ["operations"] and report["configured"] == ["scout"]
        assert report["unchanged"] == sorted(SAMPLE_AGENTS - {"operations"})
        after = await etags()
        assert set(after) == SAMPLE_AGENTS | {"scout"} and after["operations"] != registered["operations"]
        assert {k: v for k, v in after.items() if k not in ("operations", "scout")} == \
            {k: v for k, v in registered.items() if k != "operations"}
        await settle(platform)
        assert (await agent(platform, "operations"))["status"] == "retired"
        assert (await agent(platform, "scout"))["status"] == "sleeping"


async def test_the_watchers_step_applies_a_change_once_and_declares_its_rule(tmp_path: Path) -> None:
    """``apply_config_changes`` is what the watcher runs (the look and the topology's build on
    worker threads): a new agent is registered and its bus rule declared; nothing changed, nothing done."""
    configs = tmp_path / "agent_configs"
    shutil.copytree(REPO / "agent_configs", configs)
    paths = f"{configs},{REPO / 'mcp_configs'}"
    async with running(tmp_path / "state", config_paths=paths, watch_interval=3600) as platform:
        def realm_rules() -> list[str]:
            subscriptions = platform.host.bus.entities()["topics"]["agent-events"]["subscriptions"]
            return [rule.name for rule in subscriptions["realm"]["rules"]]

        assert await platform.apply_config_changes(refresh=True) is None
        assert "agent-scout" not in realm_rules()
        (configs / "scout.yaml").write_text((configs / "ceo.yaml").read_text().replace("id: ceo", "id: scout", 1))
        report = await platform.apply_config_changes(refresh=True)
        assert report is not None and report["configured"] == ["scout"]
        assert "agent-scout" in realm_rules()
        assert await platform.apply_config_changes(refresh=True) is None
        await settle(platform)
        assert (await agent(platform, "scout"))["status"] == "sleeping"


async def test_a_sync_lets_the_engine_run_each_configure_command_as_it_is_queued(tmp_path: Path, monkeypatch) -> None:
    """The sync gives the event loop a turn every YIELD_EVERY agents: an in-process engine runs
    the configure commands as they come instead of finding them all queued at the end."""
    from realm_of_agents import registration

    monkeypatch.setattr(registration, "YIELD_EVERY", 1)
    configs = tmp_path / "agent_configs"
    shutil.copytree(REPO / "agent_configs", configs)
    paths = f"{configs},{REPO / 'mcp_configs'}"
    async with running(tmp_path / "state", config_paths=paths, watch_interval=3600) as platform:
        engine = platform.host.engine
        coo = (configs / "coo.yaml").read_text()
        for n in range(6):
            (configs / f"clone-{n}.yaml").write_text(coo.replace("id: coo", f"id: clone-{n}", 1))
        queued: list[int] = []
        engine.tick_hooks.append(lambda now: queued.append(sum(1 for t in engine.ready_orch if t.startswith("command-"))))
        report = await ok(platform, "POST", "agents/sync")
        assert report["configured"] == [f"clone-{n}" for n in range(6)]
        assert queued and max(queued) < 6, queued  # without the turns: no tick until all six were queued
        await settle(platform)
        for n in range(6):
            assert (await agent(platform, f"clone-{n}"))["status"] == "sleeping"


async def test_config_changes_reconfigure_retire_and_survive_broken_files(tmp_path: Path) -> None:
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "agent_configs", configs / "agent_configs")
    shutil.copytree(REPO / "mcp_configs", configs / "mcp_configs")
    paths = f"{configs / 'agent_configs'},{configs / 'mcp_configs'}"
    async with running(tmp_path / "state", config_paths=paths, watch_interval=0.1) as platform:
        before = await agent(platform, "ceo")

        # A purpose change: the watcher syncs, the version changes, memory records the change.
        purpose = "Set company direction and decide on strategy, investments and acquisitions."
        text = (configs / "agent_configs" / "ceo.yaml").read_text()
        start = text.index("purpose: >-")
        end = text.index("scope:")
        (configs / "agent_configs" / "ceo.yaml").write_text(text[:start] + f"purpose: {purpose}\n" + text[end:])

        async def reconfigured() -> dict | None:
            ceo = await agent(platform, "ceo")
            return ceo if ceo["config_version"] != before["config_version"] else None

        ceo = await wait_until(reconfigured, timeout=15, what="the watcher to reconfigure the CEO")
        await settle(platform)
        ceo = await agent(platform, "ceo")
        assert ceo["purpose"] == purpose and ceo["status"] == "sleeping"
        assert any(f.endswith(f"purpose changed to: {purpose}") for f in ceo["memory"]["facts"]), ceo["memory"]

        # A deleted file retires its agent; its state is kept.
        sent = await send_event(platform, "operations", "ops.checklist.updated", {"plan": "vendor follow-up"})
        await settle(platform)
        assert (await archived_turn(platform, "operations", sent["turn_id"]))["outcome"] == "replied"
        (configs / "agent_configs" / "operations.yaml").unlink()

        async def retired() -> dict | None:
            ops = await agent(platform, "operations")
            return ops if ops["status"] == "retired" else None

        ops = await wait_until(retired, timeout=15, what="the operations agent to retire")
        assert ops["counters"]["turns"] == 1 and len(ops["memory"]["window"]) == 1
        listing = {a["id"]: a for a in (await ok(platform, "GET", "agents"))["agents"]}
        assert listing["operations"]["status"] == "retired" and listing["operations"]["declared"] is False

        # A broken file keeps its agent running on its last good config, and the problem is reported.
        cto_before = await agent(platform, "cto")
        broken = configs / "agent_configs" / "cto.json"
        broken.write_text('{"id": "cto", "purpose": ')
        report = await ok(platform, "POST", "agents/sync")
        assert report["kept_broken"] == ["cto"] and "cto" not in report["retired"] + report["configured"]
        problems = (await ok(platform, "GET", "configs/problems"))["problems"]
        assert any(p["file"] == str(broken) and p["severity"] == "error" for p in problems), problems
        await settle(platform)
        cto = await agent(platform, "cto")
        assert cto["status"] == "sleeping" and cto["config_version"] == cto_before["config_version"]
        assert cto["purpose"] == cto_before["purpose"]

        direct = await send_event(platform, "cto", "incident.opened", {"summary": "database failover"})
        broadcast = Envelope(type="incident.opened", source="monitoring", data={"summary": "payments outage"})
        await platform.host.send("agent-events", broadcast.to_json(), message_id=broadcast.id, subject=broadcast.type)
        await settle(platform)
        assert (await archived_turn(platform, "cto", direct["turn_id"]))["outcome"] == "replied"
        assert broadcast.id in [t["event_id"] for t in await recent_turns(platform, "cto")]
        assert await deadletters(platform) == []
