"""The OpenAI-compatible provider and provider selection, against a real local fake server."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from kernel.config.references import UnresolvedReference
from kernel.inference.factory import InferenceSettingsError, describe_provider, provider_from_settings
from kernel.inference.offline import OfflineProvider
from kernel.inference.openai_compatible import OpenAICompatibleProvider
from kernel.inference.port import (
    ChatMessage,
    ChatRequest,
    InferenceError,
    InferenceTimeout,
    InferenceUnavailable,
    ToolCall,
    ToolSpec,
)

from .fake_openai import FakeOpenAI

KEY = "sk-test-7f3a9c1e5b2d4680"
LIST_DIR = ToolSpec(
    "filesystem__list_directory",
    "List a directory",
    {"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)


def _provider(server: FakeOpenAI, *, api_key: str | None = None, default_model: str = "base-model",
              timeout: float = 5.0) -> OpenAICompatibleProvider:
    return OpenAICompatibleProvider(server.base_url, api_key=api_key, default_model=default_model, timeout=timeout)


def _request(*messages: ChatMessage, tools: list[ToolSpec] | None = None, model: str | None = None) -> ChatRequest:
    return ChatRequest(agent_id="cfo", messages=list(messages), tools=tools or [], model=model)


@pytest.fixture
async def server():
    async with FakeOpenAI() as fake:
        yield fake


# -- completions -----------------------------------------------------------------------------------


async def test_completion_text_usage_and_reported_model(server: FakeOpenAI) -> None:
    provider = _provider(server)
    server.reply(content="Invoice 42 is approved.", model="served-model", usage={"prompt_tokens": 11, "completion_tokens": 4})
    result = await provider.complete(_request(ChatMessage("system", "You are the CFO."), ChatMessage("user", "Invoice 42?")))
    await provider.close()
    assert result.content == "Invoice 42 is approved."
    assert result.tool_calls == []
    assert result.provider == "openai-compatible"
    assert result.model == "served-model"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (11, 4)
    (sent,) = server.requests
    assert sent["messages"] == [{"role": "system", "content": "You are the CFO."}, {"role": "user", "content": "Invoice 42?"}]
    assert sent["temperature"] == 0.2 and sent["max_tokens"] == 1024
    assert "tools" not in sent


async def test_the_echo_default_when_nothing_is_scripted(server: FakeOpenAI) -> None:
    provider = _provider(server)
    result = await provider.complete(_request(ChatMessage("user", "hello there")))
    await provider.close()
    assert result.content == "fake: hello there"
    assert result.model == "base-model"


async def test_tool_call_round_trip(server: FakeOpenAI) -> None:
    provider = _provider(server)
    server.reply(content=None, tool_calls=[{"id": "call_1", "name": LIST_DIR.name, "arguments": {"path": "workspace"}}])
    server.reply(content="The workspace holds a.txt.")
    history = [ChatMessage("system", "sys"), ChatMessage("user", "What is in the workspace?")]

    first = await provider.complete(_request(*history, tools=[LIST_DIR]))
    assert first.content == ""
    assert first.tool_calls == [ToolCall("call_1", "filesystem__list_directory", {"path": "workspace"})]

    history += [ChatMessage("assistant", first.content, tool_calls=first.tool_calls),
                ChatMessage("tool", '{"entries": ["a.txt"]}', tool_call_id="call_1")]
    second = await provider.complete(_request(*history, tools=[LIST_DIR]))
    await provider.close()
    assert second.content == "The workspace holds a.txt." and second.tool_calls == []

    offered, answered = server.requests
    assert offered["tools"] == [{
        "type": "function",
        "function": {"name": "filesystem__list_directory", "description": "List a directory", "parameters": LIST_DIR.parameters},
    }]
    assistant, tool = answered["messages"][2:]
    assert assistant["role"] == "assistant" and assistant["content"] is None
    (call,) = assistant["tool_calls"]
    assert call["id"] == "call_1" and call["type"] == "function"
    assert call["function"]["name"] == "filesystem__list_directory"
    assert json.loads(call["function"]["arguments"]) == {"path": "workspace"}
    assert tool == {"role": "tool", "tool_call_id": "call_1", "content": '{"entries": ["a.txt"]}'}


async def test_empty_tool_arguments_are_an_empty_object(server: FakeOpenAI) -> None:
    provider = _provider(server)
    server.reply(tool_calls=[{"id": "c", "name": LIST_DIR.name, "arguments": ""}])
    result = await provider.complete(_request(ChatMessage("user", "go"), tools=[LIST_DIR]))
    await provider.close()
    assert result.tool_calls == [ToolCall("c", LIST_DIR.name, {})]


@pytest.mark.parametrize("arguments", ['{"path": "workspace"', "[1, 2]"])
async def test_bad_tool_arguments_raise_inference_error(server: FakeOpenAI, arguments: str) -> None:
    provider = _provider(server)
    server.reply(tool_calls=[{"id": "call_9", "name": LIST_DIR.name, "arguments": arguments}])
    with pytest.raises(InferenceError) as caught:
        await provider.complete(_request(ChatMessage("user", "go"), tools=[LIST_DIR]))
    await provider.close()
    assert type(caught.value) is InferenceError
    assert "filesystem__list_directory" in str(caught.value) and "call_9" in str(caught.value)


# -- model selection -------------------------------------------------------------------------------


async def test_the_adapter_name_selects_the_served_model(server: FakeOpenAI) -> None:
    provider = _provider(server, default_model="base-model")
    await provider.complete(_request(ChatMessage("user", "a"), model="cfo-finance-lora"))
    await provider.complete(_request(ChatMessage("user", "b")))
    await provider.close()
    assert [sent["model"] for sent in server.requests] == ["cfo-finance-lora", "base-model"]


async def test_no_adapter_and_no_default_model_is_an_error(server: FakeOpenAI) -> None:
    provider = _provider(server, default_model="")
    with pytest.raises(InferenceError, match="AOS_INFERENCE_MODEL"):
        await provider.complete(_request(ChatMessage("user", "a")))
    await provider.close()
    assert server.requests == []


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", [500, 503, 429])
async def test_server_errors_and_throttling_are_unavailable(server: FakeOpenAI, status: int) -> None:
    provider = _provider(server)
    server.fail(status=status, message="the GPU is on fire")
    with pytest.raises(InferenceUnavailable) as caught:
        await provider.complete(_request(ChatMessage("user", "a")))
    await provider.close()
    text = str(caught.value)
    assert f"127.0.0.1:{server.base_url.split(':')[2].split('/')[0]}" in text
    assert f"HTTP {status}" in text and "the GPU is on fire" in text
    assert len(server.requests) == 1  # never retried by the client


async def test_client_errors_are_plain_inference_errors(server: FakeOpenAI) -> None:
    provider = _provider(server)
    server.fail(status=404, message="model 'nope' not found")
    with pytest.raises(InferenceError) as caught:
        await provider.complete(_request(ChatMessage("user", "a"), model="nope"))
    await provider.close()
    assert type(caught.value) is InferenceError
    assert "HTTP 404" in str(caught.value) and "not found" in str(caught.value)


async def test_a_slow_answer_is_a_timeout(server: FakeOpenAI) -> None:
    provider = _provider(server, timeout=0.3)
    server.delay(5)
    with pytest.raises(InferenceTimeout, match=r"did not answer within 0\.3 s"):
        await provider.complete(_request(ChatMessage("user", "a")))
    await provider.close()


async def test_a_refused_connection_is_unavailable() -> None:
    async with FakeOpenAI() as fake:
        base_url = fake.base_url  # the port is free again once the server has stopped
    provider = OpenAICompatibleProvider(base_url, api_key=None, default_model="m", timeout=2)
    with pytest.raises(InferenceUnavailable, match="unreachable"):
        await provider.complete(_request(ChatMessage("user", "a")))
    await provider.close()


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        ('{"choices": []}', "application/json", "no choices"),
        ("not json", "application/json", "not valid JSON"),
        ("<html>gateway</html>", "text/html", "not a chat completion"),
        ('{"choices": [{"message": null}]}', "application/json", "no message"),
        ('{"choices": [{"message": {"tool_calls": [{"id": "a", "type": "function", "function": null}]}}]}',
         "application/json", "no function name"),
    ],
)
async def test_a_response_that_is_not_a_completion_is_an_error(server: FakeOpenAI, body: str, content_type: str,
                                                               expected: str) -> None:
    provider = _provider(server)
    server.raw(body, content_type=content_type)
    with pytest.raises(InferenceError, match=expected) as caught:
        await provider.complete(_request(ChatMessage("user", "a")))
    await provider.close()
    assert type(caught.value) is InferenceError


async def test_missing_usage_counts_as_zero(server: FakeOpenAI) -> None:
    provider = _provider(server)
    server.raw('{"model": "m", "choices": [{"index": 0, "message": {"role": "assistant", "content": "ok"}}]}')
    result = await provider.complete(_request(ChatMessage("user", "a")))
    assert result.content == "ok" and (result.usage.prompt_tokens, result.usage.completion_tokens) == (0, 0)


async def test_a_tool_message_without_a_call_id_is_refused_before_sending(server: FakeOpenAI) -> None:
    provider = _provider(server)
    with pytest.raises(InferenceError, match="tool_call_id"):
        await provider.complete(_request(ChatMessage("user", "a"), ChatMessage("tool", "result")))
    assert server.requests == []


async def test_concurrent_calls_on_one_loop(server: FakeOpenAI) -> None:
    provider = _provider(server)
    results = await asyncio.gather(*(provider.complete(_request(ChatMessage("user", f"n{i}"))) for i in range(5)))
    assert sorted(r.content for r in results) == [f"fake: n{i}" for i in range(5)]


async def test_the_fake_server_rejects_requests_without_messages(server: FakeOpenAI) -> None:
    provider = _provider(server)
    with pytest.raises(InferenceError, match="HTTP 400") as caught:
        await provider.complete(_request())
    await provider.close()
    assert type(caught.value) is InferenceError and "messages" in str(caught.value)


# -- the API key -----------------------------------------------------------------------------------


async def test_the_key_is_sent_as_bearer_and_appears_in_no_error(server: FakeOpenAI) -> None:
    provider = _provider(server, api_key=KEY, timeout=0.3)
    await provider.complete(_request(ChatMessage("user", "a")))
    assert server.authorizations == [f"Bearer {KEY}"]

    server.fail(status=401, message=f"Incorrect API key provided: {KEY}")
    server.fail(status=500, message="boom")
    server.delay(5)
    server.reply(tool_calls=[{"name": LIST_DIR.name, "arguments": "{not json"}])
    errors = []
    for _ in range(4):
        with pytest.raises(InferenceError) as caught:
            await provider.complete(_request(ChatMessage("user", "a"), tools=[LIST_DIR]))
        errors.append(caught.value)
    await provider.close()
    assert [type(e) for e in errors] == [InferenceError, InferenceUnavailable, InferenceTimeout, InferenceError]
    for error in errors:
        assert KEY not in str(error) and KEY not in repr(error)
        assert error.__cause__ is None and error.__suppress_context__
    assert "***" in str(errors[0])
    assert KEY not in repr(provider)


async def test_without_a_key_no_authorization_header_is_sent(server: FakeOpenAI, monkeypatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-ambient-should-not-be-used")
    provider = _provider(server, api_key=None)
    await provider.complete(_request(ChatMessage("user", "a")))
    await provider.close()
    assert server.authorizations == [None]


def test_one_provider_serves_several_event_loops() -> None:
    """Clients are bound to their loop; the provider opens one per call, so fresh loops just work."""
    loop = asyncio.new_event_loop()
    fake = FakeOpenAI()
    loop.run_until_complete(fake.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        provider = _provider(fake)
        for word in ("first", "second"):  # each asyncio.run is a new loop
            result = asyncio.run(provider.complete(_request(ChatMessage("user", word))))
            assert result.content == f"fake: {word}"
    finally:
        asyncio.run_coroutine_threadsafe(fake.close(), loop).result(timeout=10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        loop.close()


# -- selection from settings -----------------------------------------------------------------------


async def test_empty_endpoint_selects_the_offline_provider() -> None:
    assert isinstance(await provider_from_settings({}), OfflineProvider)
    assert isinstance(await provider_from_settings({"AOS_INFERENCE_ENDPOINT": "  "}), OfflineProvider)
    assert describe_provider({}) == {"provider": "offline", "endpoint": None}


async def test_a_literal_key_is_rejected_without_echoing_it() -> None:
    environ = {"AOS_INFERENCE_ENDPOINT": "http://127.0.0.1:1/v1", "AOS_INFERENCE_API_KEY": KEY}
    with pytest.raises(InferenceSettingsError, match="secret") as caught:
        await provider_from_settings(environ)
    assert KEY not in str(caught.value) and "${secret:NAME}" in str(caught.value)


@pytest.mark.parametrize("value", ["${" + KEY + "}", "Bearer ${env:LLM_KEY}", "${env:A}${env:B}"])
async def test_malformed_or_mixed_key_references_are_rejected(value: str) -> None:
    environ = {"AOS_INFERENCE_ENDPOINT": "http://127.0.0.1:1/v1", "AOS_INFERENCE_API_KEY": value, "LLM_KEY": KEY}
    with pytest.raises(InferenceSettingsError) as caught:
        await provider_from_settings(environ)
    assert KEY not in str(caught.value)


async def test_an_env_reference_is_resolved_through_the_environ_mapping(server: FakeOpenAI) -> None:
    environ = {
        "AOS_INFERENCE_ENDPOINT": server.base_url,
        "AOS_INFERENCE_API_KEY": "${env:LLM_KEY}",
        "AOS_INFERENCE_MODEL": "phi-4-mini",
        "AOS_INFERENCE_TIMEOUT_SECONDS": "7",
        "LLM_KEY": KEY,
    }
    provider = await provider_from_settings(environ)
    assert isinstance(provider, OpenAICompatibleProvider)
    result = await provider.complete(_request(ChatMessage("user", "hi")))
    await provider.close()
    assert result.provider == "openai-compatible" and result.content == "fake: hi"
    assert server.authorizations == [f"Bearer {KEY}"]
    assert server.requests[0]["model"] == "phi-4-mini"


async def test_a_secret_reference_is_read_from_the_secret_store(server: FakeOpenAI) -> None:
    class Store:
        asked: list[str] = []

        async def get(self, name: str) -> str:
            self.asked.append(name)
            return KEY

        async def close(self) -> None:
            return None

    store = Store()
    environ = {"AOS_INFERENCE_ENDPOINT": server.base_url, "AOS_INFERENCE_API_KEY": "${secret:llm-api-key}",
               "AOS_INFERENCE_MODEL": "m"}
    provider = await provider_from_settings(environ, store)
    await provider.complete(_request(ChatMessage("user", "hi")))
    await provider.close()
    assert store.asked == ["llm-api-key"] and server.authorizations == [f"Bearer {KEY}"]


async def test_a_missing_referenced_variable_names_the_reference() -> None:
    environ = {"AOS_INFERENCE_ENDPOINT": "http://127.0.0.1:1/v1", "AOS_INFERENCE_API_KEY": "${secret:llm-api-key}"}
    with pytest.raises(UnresolvedReference, match="LLM_API_KEY"):
        await provider_from_settings(environ)


async def test_a_bad_timeout_is_rejected() -> None:
    environ = {"AOS_INFERENCE_ENDPOINT": "http://127.0.0.1:1/v1", "AOS_INFERENCE_TIMEOUT_SECONDS": "soon"}
    with pytest.raises(InferenceSettingsError, match="AOS_INFERENCE_TIMEOUT_SECONDS"):
        await provider_from_settings(environ)


def test_describe_provider_shows_the_host_and_never_the_key() -> None:
    environ = {
        "AOS_INFERENCE_ENDPOINT": "https://user:pw@contoso-ai.openai.azure.com/openai/v1/?api-key=x",
        "AOS_INFERENCE_API_KEY": "${env:LLM_KEY}",
        "LLM_KEY": KEY,
    }
    described = describe_provider(environ)
    assert described == {"provider": "openai-compatible", "endpoint": "contoso-ai.openai.azure.com"}
    assert KEY not in json.dumps(described)
    assert describe_provider({"AOS_INFERENCE_ENDPOINT": "http://localhost:11434/v1"})["endpoint"] == "localhost:11434"


async def test_the_fake_server_lists_models_and_rejects_non_json(server: FakeOpenAI) -> None:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{server.base_url}/models") as answer:
            assert [m["id"] for m in (await answer.json())["data"]] == ["fake-model"]
        async with session.post(f"{server.base_url}/chat/completions", data="nope") as answer:
            assert answer.status == 400 and "JSON" in (await answer.json())["error"]["message"]
