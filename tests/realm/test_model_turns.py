"""Turns with a model endpoint configured (a fake OpenAI-compatible server on loopback): the
model judges purpose, answers, and writes the summary line of the turn leaving the window."""

from __future__ import annotations

import json
from pathlib import Path

from kernel.platform import Platform
from tests.inference.fake_openai import FakeOpenAI

AGENT = {
    "id": "analyst",
    "display_name": "Analyst",
    "purpose": "Analyse invoices and flag budget risks.",
    "subscriptions": [{"event_types": ["invoice.*"]}],
    "model": {"adapter": {"name": "finance-lora"}},
    "memory": {"window_turns": 1},
}

ADAPTER = {"kind": "adapter", "name": "finance-lora", "version": "1", "base_model": "tiny-base",
           "training_data": {"uri": "data/finance.jsonl"}}


async def _wait_turn(platform: Platform, agent_id: str, turn_id: str) -> dict:
    for _ in range(200):
        await platform.wait_idle(30)
        status, turn = await platform.api("GET", f"agents/{agent_id}/turns/{turn_id}")
        if status == 200 and "outcome" in turn:
            return turn
    raise AssertionError(f"turn {turn_id} did not finish")


async def test_the_model_judges_answers_and_summarizes(tmp_path: Path) -> None:
    configs = tmp_path / "agent_configs"
    configs.mkdir()
    (configs / "analyst.json").write_text(json.dumps(AGENT))
    (configs / "finance-lora.json").write_text(json.dumps(ADAPTER))
    async with FakeOpenAI() as model:
        settings = {"AOS_INFERENCE_ENDPOINT": model.base_url, "AOS_INFERENCE_MODEL": "base"}
        async with Platform(state_dir=tmp_path / "state", port=0, config_paths=str(configs),
                            extra_settings=settings) as platform:
            model.reply(content='{"aligned": true, "reason": "an invoice is the analyst\'s daily work"}')
            model.reply(content="Invoice 1 is within budget.")
            status, first = await platform.api("POST", "agents/analyst/events", {"type": "invoice.received", "data": {"n": 1}})
            assert status == 202, first
            turn = await _wait_turn(platform, "analyst", first["turn_id"])
            assert turn["alignment"]["method"] == "model"
            assert turn["alignment"]["reason"] == "an invoice is the analyst's daily work"
            assert turn["reply"] == "Invoice 1 is within budget." and turn["provider"] == "openai-compatible"
            assert model.requests[1]["model"] == "finance-lora", "the adapter name selects the served LoRA"

            model.reply(content='{"aligned": false, "reason": "a party invitation is not an invoice"}')
            status, second = await platform.api("POST", "agents/analyst/events", {"type": "party.invite", "data": {}})
            declined = await _wait_turn(platform, "analyst", second["turn_id"])
            assert declined["outcome"] == "declined" and "not an invoice" in declined["reply"]
            # the declined turn pushed the first out of the one-turn window; no model call was made for
            # the declined event itself, so its summary line stays extractive
            state = (await platform.api("GET", "agents/analyst"))[1]
            assert len(state["memory"]["window"]) == 1 and len(state["memory"]["summary"]) == 1

            model.reply(content='{"aligned": true, "reason": "invoice"}')
            model.reply(content="Invoice 3 exceeds the travel budget by 12%.")
            model.reply(content="Flagged the travel budget overrun on invoice 3.")
            status, third = await platform.api("POST", "agents/analyst/events", {"type": "invoice.received", "data": {"n": 3}})
            await _wait_turn(platform, "analyst", third["turn_id"])
            state = (await platform.api("GET", "agents/analyst"))[1]
            summary_request = model.requests[-1]["messages"][0]["content"]
            assert "party.invite" in summary_request, "the model summarizes the turn leaving the window"
            assert state["memory"]["summary"][-1].endswith("party.invite (declined): Flagged the travel budget overrun on invoice 3.")


async def test_agents_making_their_first_model_calls_at_once_offer_each_tool_once(tmp_path: Path) -> None:
    """The context tools are listed once per process, on first use: agents whose first model calls
    run concurrently (each waiting on that listing) still offer the model each tool once."""
    from realm_of_agents import activities

    activities._context_specs.clear()  # this process's first use, whatever ran before
    configs = tmp_path / "agent_configs"
    configs.mkdir()
    names = [f"clerk-{n}" for n in range(4)]
    for name in names:
        (configs / f"{name}.json").write_text(json.dumps({**AGENT, "id": name, "display_name": name.title(),
                                                          "model": {}, "memory": {}}))
    async with FakeOpenAI() as model:
        settings = {"AOS_INFERENCE_ENDPOINT": model.base_url, "AOS_INFERENCE_MODEL": "base"}
        async with Platform(state_dir=tmp_path / "state", port=0, config_paths=str(configs),
                            extra_settings=settings) as platform:
            for name in names:
                status, _ = await platform.api("POST", f"agents/{name}/events", {"type": "invoice.received", "data": {}})
                assert status == 202
            await platform.wait_idle(60)
    offered = [[tool["function"]["name"] for tool in request["tools"]] for request in model.requests if request.get("tools")]
    assert len(offered) >= len(names), "every agent's turn called the model with its tools"
    for names_offered in offered:
        assert "context__remember_fact" in names_offered
        assert len(names_offered) == len(set(names_offered)), f"a tool offered twice: {names_offered}"
