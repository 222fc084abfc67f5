"""`aos adapters export-data`: archived turns (written through TurnArchive on the embedded storage
adapters) become redacted chat JSONL that train_lora reads."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from kernel.adapters.factory import Adapters
from kernel.cli import main
from kernel.ml import train_lora
from realm_of_agents import prompt
from realm_of_agents.archive import TurnArchive
from tests.ml.support import write_configs

SECRET_KEY = "sk-abcdefghijklmnopqrstuvwx"


def record(n: int, *, agent: str = "fin", outcome: str = "replied", provider: str = "openai-compatible",
           tools: bool = True, vendor: str = "Contoso", minute: int | None = None) -> dict[str, Any]:
    """A turn record as realm_of_agents.turn writes it."""
    minute = n if minute is None else minute
    reply = f"Decision: approve the {vendor} invoice. Rationale: within budget; confirmed with ap@{vendor.lower()}.com."
    steps: list[dict[str, Any]] = []
    if tools:
        call = {"id": f"call-{n}", "name": "erp__lookup_vendor",
                "arguments": {"vendor": vendor, "api_key": SECRET_KEY, "contact": "+49 30 1234 5678"}}
        steps += [
            {"kind": "model", "step": 0, "provider": provider, "model": "tiny-finance", "content": "Looking it up.",
             "tool_calls": [call], "usage": {"prompt_tokens": 10, "completion_tokens": 5}},
            {"kind": "tool", "index": 0, "server": "erp", "tool": "lookup_vendor", "arguments": call["arguments"],
             "call_id": call["id"], "result": {"content": [{"type": "text", "text":
                                                          f"{vendor}: IBAN DE89 3704 0044 0532 0130 00, portal password: Winter2026!"}],
                                               "is_error": False}},
        ]
    steps.append({"kind": "model", "step": len(steps) // 2, "provider": provider, "model": "tiny-finance",
                  "content": reply, "tool_calls": [], "usage": {"prompt_tokens": 20, "completion_tokens": 9}})
    return {
        "agent_id": agent, "turn_id": f"turn-{agent}-{n:04d}", "config_version": "abc",
        "event": {"id": f"evt-{n}", "type": "invoice.received", "source": "erp", "subject": "INV-0042",
                  "data": {"vendor": vendor, "amount_eur": 1200, "approver_email": "boss@example.com",
                           "card": "4111 1111 1111 1111", "password": "hunter2"}},
        "started": f"2026-11-21T10:{minute:02d}:00+00:00", "finished": f"2026-11-21T10:{minute:02d}:05+00:00",
        "outcome": outcome, "alignment": {"aligned": True}, "steps": steps,
        "reply": reply if outcome != "failed" else None, "error": "boom" if outcome == "failed" else None,
        "decision": {"action": outcome, "rationale": "x"}, "outputs": [], "provider": provider,
        "tool_calls": 1 if tools else 0,
    }


@pytest.fixture
def archived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Configs in the current folder and turns in an embedded state folder that the settings name."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AOS_STORAGE", "embedded")
    monkeypatch.setenv("AOS_STATE_DIR", str(tmp_path / "state"))
    write_configs(tmp_path, base_model="tiny", train="data/train.jsonl")
    duplicate = record(1, minute=1)                  # the same conversation again, in another turn
    duplicate["turn_id"] = "turn-fin-0002"
    records = [
        record(1),                                   # kept, with its tool call
        duplicate,
        record(3, vendor="Fabrikam", tools=False),   # kept, no tools
        record(4, outcome="declined"),
        record(5, outcome="failed"),
        record(6, provider="offline"),
        record(7, agent="other"),                    # an agent that does not use the adapter
    ]

    async def write() -> None:
        ports = Adapters({"AOS_STORAGE": "embedded", "AOS_STATE_DIR": str(tmp_path / "state")})
        archive = TurnArchive(ports.blobs, ports.tables)
        for item in records:
            await archive.save(item)
        await ports.close()

    asyncio.run(write())
    return tmp_path


def test_export_writes_redacted_conversations_and_reports_what_it_skipped(archived: Path) -> None:
    result = CliRunner().invoke(main, ["adapters", "export-data", "tiny-finance", "--config", "agent_configs",
                                       "--out", "data/exported.jsonl"])
    assert result.exit_code == 0, result.output
    assert "adapter tiny-finance: 2 conversation(s) written from 6 archived turn(s) of fin" in result.output
    assert "1 duplicate(s) left out" in result.output
    assert "skipped 1: outcome 'declined' (only replied turns are examples)" in result.output
    assert "skipped 1: outcome 'failed' (only replied turns are examples)" in result.output
    assert "skipped 1: answered by the offline provider (not model output)" in result.output
    assert "redacted: card 2, email 4, iban 1, key 3, phone 1, secret 1" in result.output

    text = (archived / "data" / "exported.jsonl").read_text()
    for planted in ("boss@example.com", "ap@contoso.com", "4111 1111 1111 1111", "hunter2", SECRET_KEY,
                    "+49 30 1234 5678", "DE89 3704", "Winter2026!"):
        assert planted not in text, planted
    lines = [json.loads(line) for line in text.splitlines()]
    assert [line["metadata"]["turn_id"] for line in lines] == ["turn-fin-0001", "turn-fin-0003"]

    with_tools = lines[0]["messages"]
    assert [m["role"] for m in with_tools] == ["system", "user", "assistant", "tool", "assistant"]
    system, user, call, tool, reply = with_tools
    assert system["content"].startswith("You are Finance Agent (agent id 'fin')")
    assert "Purpose: Review invoices against budget" in system["content"]
    assert user["content"].startswith("Event 'invoice.received' from 'erp' about 'INV-0042':")
    event_data = json.loads(user["content"].split(":\n", 1)[1])
    assert event_data == {"amount_eur": 1200, "approver_email": "[email]", "card": "[card-number]",
                          "password": "[redacted]", "vendor": "Contoso"}
    assert call == {"role": "assistant", "content": "Looking it up.", "tool_calls": [
        {"id": "call-1", "type": "function", "function": {"name": "erp__lookup_vendor", "arguments": {
            "vendor": "Contoso", "api_key": "[redacted]", "contact": "[phone]"}}}]}
    assert tool == {"role": "tool", "tool_call_id": "call-1",
                    "content": "Contoso: IBAN [iban], portal password: [secret]"}
    assert reply["content"] == "Decision: approve the Contoso invoice. Rationale: within budget; confirmed with [email]."
    assert [m["role"] for m in lines[1]["messages"]] == ["system", "user", "assistant"]

    # exactly what the training script reads
    conversations = train_lora.read_conversations(archived / "data" / "exported.jsonl")
    assert len(conversations) == 2
    text_only, spans = train_lora.render_role_tags(conversations[0], "</s>")
    assert len(spans) == 2 and "<tool_call>" in text_only


def test_the_system_prompt_is_the_turns_own(archived: Path) -> None:
    from kernel.config import load_configs

    agent = load_configs(["agent_configs"]).agents["fin"]
    result = CliRunner().invoke(main, ["adapters", "export-data", "tiny-finance", "--config", "agent_configs"])
    assert result.exit_code == 0, result.output
    first = json.loads(result.stdout.splitlines()[0])
    assert first["messages"][0]["content"] == prompt.system_prompt({"config": agent.model_dump(mode="json")})


def test_agents_can_be_chosen_and_tool_turns_left_out(archived: Path) -> None:
    config = archived / "agent_configs" / "tiny-finance.adapter.yaml"
    config.write_text(config.read_text() + "export:\n  agents: [other]\n  include_tool_calls: false\n"
                      "  redaction:\n    builtin: [email]\n    patterns:\n      - {name: invoice, pattern: 'INV-\\d+'}\n")
    result = CliRunner().invoke(main, ["adapters", "export-data", "tiny-finance", "--config", "agent_configs",
                                       "--out", "out.jsonl"])
    assert result.exit_code == 0, result.output
    assert "0 conversation(s) written from 1 archived turn(s) of other" in result.output
    assert "skipped 1: called tools (export.include_tool_calls is false)" in result.output

    result = CliRunner().invoke(main, ["adapters", "export-data", "tiny-finance", "--config", "agent_configs",
                                       "--out", "out.jsonl", "--agent", "fin"])
    assert result.exit_code == 0, result.output
    [line] = [json.loads(x) for x in (archived / "out.jsonl").read_text().splitlines()]
    assert line["metadata"]["turn_id"] == "turn-fin-0003"
    user = line["messages"][1]["content"]
    assert "about '[invoice]'" in user and "[email]" in user
    assert "4111 1111 1111 1111" in user  # only the configured builtin (email) applies
    assert '"password": "[redacted]"' in user  # key rules always apply

    result = CliRunner().invoke(main, ["adapters", "export-data", "tiny-finance", "--config", "agent_configs",
                                       "--agent", "ghost"])
    assert result.exit_code == 1 and "unknown agent(s) ghost" in result.output
