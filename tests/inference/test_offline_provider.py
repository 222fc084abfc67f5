"""The offline provider: deterministic, labelled, and able to drive a tool call on request."""

from __future__ import annotations

import json

import pytest

from kernel.inference.offline import OfflineProvider, complete
from kernel.inference.port import ChatMessage, ChatRequest, ToolSpec, split_tool_name, tool_name

LIST_DIR = ToolSpec(tool_name("filesystem", "list_directory"), "List a directory", {"type": "object"})


def _request(*messages: ChatMessage, tools: list[ToolSpec] | None = None) -> ChatRequest:
    return ChatRequest(agent_id="cfo", messages=list(messages), tools=tools or [], model="cfo-finance")


def test_plain_events_get_a_labelled_acknowledgement() -> None:
    result = complete(_request(ChatMessage("user", "Invoice 42 from Contoso for 1,200 EUR")))
    assert result.provider == "offline" and result.model == "offline/cfo-finance"
    assert result.content.startswith("[offline] Acknowledged: Invoice 42")
    assert result.tool_calls == []


def test_explicit_tool_request_becomes_a_tool_call() -> None:
    event = {"type": "ops.check", "data": {"tool_call": {"server": "filesystem", "tool": "list_directory", "arguments": {"path": "workspace"}}}}
    result = complete(_request(ChatMessage("user", f"Event: {json.dumps(event)}"), tools=[LIST_DIR]))
    (call,) = result.tool_calls
    assert call.name == "filesystem__list_directory" and call.arguments == {"path": "workspace"}
    assert complete(_request(ChatMessage("user", f"Event: {json.dumps(event)}"), tools=[LIST_DIR])) == result


def test_tool_not_offered_is_not_called() -> None:
    event = {"tool_call": {"server": "filesystem", "tool": "write_file", "arguments": {}}}
    result = complete(_request(ChatMessage("user", json.dumps(event)), tools=[LIST_DIR]))
    assert result.tool_calls == []
    assert "not offered" in result.content and result.content.startswith("[offline]")


def test_tool_results_are_digested_into_the_reply() -> None:
    result = complete(_request(
        ChatMessage("user", "list it"),
        ChatMessage("assistant", ""),
        ChatMessage("tool", "[FILE] budget.csv\n[FILE] forecast.csv", tool_call_id="call_1"),
    ))
    assert result.content == "[offline] Tool result: [FILE] budget.csv [FILE] forecast.csv"


async def test_async_provider_matches_sync() -> None:
    request = _request(ChatMessage("user", "hello"))
    assert await OfflineProvider().complete(request) == complete(request)


def test_tool_names_round_trip_and_reject_bad_names() -> None:
    assert split_tool_name(tool_name("memory", "read_graph")) == ("memory", "read_graph")
    with pytest.raises(ValueError, match="not '<server>__<tool>'"):
        split_tool_name("read_graph")
