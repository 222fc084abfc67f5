"""Agents on an inference endpoint declared in config, on the embedded engine running function_app.py,
against a real OpenAI-compatible server on loopback (``FakeOpenAI``): the adapter selects the
served model, the model asks for an MCP tool that runs through the gateway, an unserved adapter
falls back to the base model (recorded), tokens are counted per agent and adapter, and turns of
different agents share the endpoint's bounded pool."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from platform_support import (
    archived_turn,
    ok,
    requires_mcp_servers,
    result_text,
    running,
    send_event,
    settle,
    tool_steps,
)

from tests.inference.fake_openai import FakeOpenAI

ALIGNED = '{"aligned": true, "reason": "ledger work is this agent\'s job"}'


def _write(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document))


def _configs(tmp_path: Path, model: FakeOpenAI, agents: dict[str, str], *, tools: bool = True,
             concurrency: int = 8) -> str:
    """Config files: the endpoint ``lab`` on the fake server (serving ``ledger-lora``), two adapters,
    the everything MCP server, and one agent per ``agents`` entry (id -> adapter)."""
    configs = tmp_path / "configs"
    _write(configs / "endpoints", "lab.json", {
        "kind": "inference_endpoint", "id": "lab", "type": "vllm", "url": model.base_url, "base_model": "tiny-base",
        "adapters": {"served": ["ledger-lora"]}, "structured_output": True, "concurrency": concurrency,
        "timeout_seconds": 10, "retries": {"max_attempts": 2, "backoff_seconds": 0.1}})
    for name in ("ledger-lora", "audit-lora"):
        _write(configs, f"{name}.json", {"kind": "adapter", "name": name, "version": "1", "base_model": "tiny-base",
                                          "training_data": {"uri": f"data/{name}.jsonl"}})
    _write(configs, "everything.json", {
        "kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node",
        "args": ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]})
    for agent_id, adapter in agents.items():
        _write(configs, f"{agent_id}.json", {
            "kind": "agent", "id": agent_id, "display_name": agent_id.title(),
            "purpose": "Keep the ledger current and explain changes.",
            "subscriptions": [{"event_types": ["ledger.*"]}],
            "model": {"endpoint": "lab", "adapter": {"name": adapter}},
            "tools": [{"server": "everything", "tools": ["echo"]}] if tools else []})
    return str(configs)


async def _turn(platform: Any, agent_id: str, event_type: str, data: Any) -> dict[str, Any]:
    sent = await send_event(platform, agent_id, event_type, data)
    await settle(platform)
    return await archived_turn(platform, agent_id, sent["turn_id"])


@requires_mcp_servers
async def test_a_turn_on_a_declared_endpoint_routes_the_adapter_and_runs_the_model_requested_tool(tmp_path: Path) -> None:
    async with FakeOpenAI(models=("tiny-base", "ledger-lora")) as model:
        paths = _configs(tmp_path, model, {"keeper": "ledger-lora"})
        model.reply(ALIGNED, usage={"prompt_tokens": 120, "completion_tokens": 12})
        model.reply(None, tool_calls=[{"id": "call_7", "name": "everything__echo",
                                       "arguments": {"message": "hello ledger"}}],
                    usage={"prompt_tokens": 300, "completion_tokens": 20})
        model.reply("The ledger tool answered: hello ledger.", usage={"prompt_tokens": 340, "completion_tokens": 9})
        async with running(tmp_path / "state", config_paths=paths) as platform:
            record = await _turn(platform, "keeper", "ledger.entry", {"summary": "echo the ledger greeting"})
            usage = await ok(platform, "GET", "usage?agent=keeper&days=1")
            health = await ok(platform, "GET", "health")

    assert record["outcome"] == "replied" and record["reply"] == "The ledger tool answered: hello ledger."
    assert record["provider"] == "openai-compatible" and record["usage"] == {"prompt_tokens": 640,
                                                                              "completion_tokens": 29}
    alignment = record["alignment"]
    assert alignment["method"] == "model" and alignment["reason"] == "ledger work is this agent's job"
    assert alignment["model"] == {"provider": "openai-compatible", "endpoint": "lab", "model": "ledger-lora",
                                       "adapter": "ledger-lora", "fallback": None, "cached": False}

    # the adapter is the model sent; the purpose check asked for schema-shaped JSON
    judged, asked, answered = model.requests
    assert [r["model"] for r in model.requests] == ["ledger-lora"] * 3
    assert judged["response_format"]["json_schema"]["name"] == "purpose_alignment"
    assert "response_format" not in asked
    # the MCP tool the agent is granted is offered with its input schema
    offered = {t["function"]["name"]: t["function"] for t in asked["tools"]}
    assert offered["everything__echo"]["parameters"]["properties"]["message"]["type"] == "string"
    # the model's tool call ran through the gateway, and its result went back to the model
    [step] = tool_steps(record)
    assert (step["server"], step["tool"], step["arguments"]) == ("everything", "echo", {"message": "hello ledger"})
    assert step["result"]["is_error"] is False and "hello ledger" in result_text(step)
    tool_message = answered["messages"][-1]
    assert tool_message["role"] == "tool" and tool_message["tool_call_id"] == "call_7"
    assert "hello ledger" in tool_message["content"]
    model_steps = [s for s in record["steps"] if s["kind"] == "model"]
    assert [s["model"] for s in model_steps] == ["ledger-lora", "ledger-lora"]

    # tokens per agent and adapter, through GET /api/usage
    by_adapter = usage["agents"]["keeper"]["by_adapter"]["ledger-lora"]
    assert (by_adapter["calls"], by_adapter["prompt_tokens"], by_adapter["completion_tokens"]) == (3, 760, 41)
    assert usage["agents"]["keeper"]["by_endpoint"] == {"lab": by_adapter}
    assert health["model"]["endpoints"]["lab"]["host"] == model.base_url.split("/")[2]
    assert health["configs"]["inference_endpoints"] == 1


async def test_an_adapter_the_endpoint_does_not_serve_falls_back_to_the_base_model_on_the_record(tmp_path: Path) -> None:
    async with FakeOpenAI(models=("tiny-base", "ledger-lora")) as model:
        paths = _configs(tmp_path, model, {"auditor": "audit-lora"}, tools=False)
        model.reply(ALIGNED).reply("Audited.")
        async with running(tmp_path / "state", config_paths=paths) as platform:
            record = await _turn(platform, "auditor", "ledger.audit", {"summary": "audit the ledger"})
            usage = await ok(platform, "GET", "usage?agent=auditor")

    assert [r["model"] for r in model.requests] == ["tiny-base", "tiny-base"]
    assert record["outcome"] == "replied" and record["reply"] == "Audited."
    fallback = record["alignment"]["model"]["fallback"]
    assert fallback == {"adapter": "audit-lora", "fallback": "base model", "model": "tiny-base",
                        "reason": "adapter 'audit-lora' is not among the adapters inference endpoint 'lab' serves "
                                  "(adapters.served)"}
    assert [s["model"] for s in record["steps"] if s["kind"] == "model"] == ["tiny-base"]
    row = usage["agents"]["auditor"]["by_adapter"]["audit-lora"]
    assert row["calls"] == 2 and row["fallbacks"] == 2
    assert usage["agents"]["auditor"]["last_fallback"]["audit-lora"] == fallback["reason"]


async def test_turns_of_different_agents_on_one_endpoint_go_out_together_within_its_pool(tmp_path: Path) -> None:
    agents = {f"clerk-{n}": "ledger-lora" for n in range(4)}
    async with FakeOpenAI(models=("tiny-base", "ledger-lora"), latency=0.4) as model:
        paths = _configs(tmp_path, model, agents, tools=False, concurrency=2)
        async with running(tmp_path / "state", config_paths=paths) as platform:
            sent = await asyncio.gather(*(send_event(platform, agent_id, "ledger.entry", {"entry": agent_id})
                                          for agent_id in agents))
            await settle(platform)
            records = [await archived_turn(platform, agent_id, s["turn_id"]) for agent_id, s in zip(agents, sent)]

    assert all(r["outcome"] == "replied" for r in records), [r["error"] for r in records]
    assert len(model.requests) == 8  # a purpose check and an answer per turn
    assert model.max_in_flight == 2, "the turns' calls overlapped, never beyond the endpoint's pool of 2"
