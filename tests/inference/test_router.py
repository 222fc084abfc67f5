"""The inference router against a real OpenAI-compatible server on loopback (``FakeOpenAI``), through
the real ``openai`` client: endpoints from config, adapter routing and fallback, retries honouring
Retry-After, the circuit breaker, the response cache, token accounting, the bounded pool,
structured output and credentials."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest

from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.config.models import InferenceEndpointConfig
from kernel.inference.auth import entra_token_provider
from kernel.inference.port import ChatMessage, ChatRequest, InferenceError, InferenceUnavailable, ToolSpec
from kernel.inference.router import InferenceRouter
from kernel.inference.usage import UsageLedger

from .fake_openai import FakeOpenAI

KEY = "sk-lab-0123456789abcdef"
ECHO = ToolSpec("everything__echo", "Echoes the message", {
    "type": "object", "properties": {"message": {"type": "string"}}, "required": ["message"]})


def endpoint(server: FakeOpenAI, **fields: Any) -> InferenceEndpointConfig:
    """An endpoint document on the fake server (vLLM-like unless ``type`` says otherwise)."""
    document = {"kind": "inference_endpoint", "id": "lab", "type": "vllm", "url": server.base_url,
                "base_model": "tiny-base", "adapters": {"served": ["cfo-finance"]}, "timeout_seconds": 5,
                "retries": {"max_attempts": 1}, **fields}
    return InferenceEndpointConfig.model_validate(document)


def router(*configs: InferenceEndpointConfig, tables: Any = None, environ: dict[str, str] | None = None,
           **options: Any) -> InferenceRouter:
    declared = {config.id: config for config in configs}
    return InferenceRouter(environ=environ or {}, endpoints=lambda: declared, tables=tables, **options)


def ask(text: str = "hello", *, agent: str = "cfo", adapter: str | None = "cfo-finance", endpoint_id: str | None = "lab",
        temperature: float = 0.2, **fields: Any) -> ChatRequest:
    return ChatRequest(agent, [ChatMessage("user", text)], endpoint=endpoint_id, adapter=adapter,
                       temperature=temperature, **fields)


@pytest.fixture
async def server():
    async with FakeOpenAI(models=("tiny-base", "cfo-finance")) as fake:
        yield fake


@pytest.fixture
async def tables(tmp_path: Path):
    store = EmbeddedTableStore(tmp_path / "tables.sqlite")
    yield store
    await store.close()


# -- adapter routing and fallback ------------------------------------------------------------------


async def test_a_served_adapter_is_the_model_sent_and_no_adapter_means_the_base_model(server: FakeOpenAI) -> None:
    lab = router(endpoint(server))
    routed = await lab.complete(ask("invoice 7?"))
    plain = await lab.complete(ask("hello", adapter=None))
    assert [r["model"] for r in server.requests] == ["cfo-finance", "tiny-base"]
    assert routed.content == "fake: invoice 7?" and routed.provider == "openai-compatible"
    assert (routed.endpoint, routed.adapter, routed.fallback, routed.cached, routed.attempts) == (
        "lab", "cfo-finance", None, False, 1)
    assert plain.adapter is None and plain.model == "tiny-base"


async def test_an_adapter_the_endpoint_does_not_serve_falls_back_to_the_base_model_and_says_why(server: FakeOpenAI) -> None:
    completion = await router(endpoint(server)).complete(ask(adapter="exec-voice"))
    assert server.requests[0]["model"] == "tiny-base"
    assert completion.fallback == {
        "adapter": "exec-voice", "fallback": "base model", "model": "tiny-base",
        "reason": "adapter 'exec-voice' is not among the adapters inference endpoint 'lab' serves (adapters.served)"}
    assert completion.to_dict()["fallback"]["fallback"] == "base model", "JSON-ready, as the turn stores it"


async def test_discovery_asks_the_models_list_once_per_ttl(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, adapters={"discover": True, "discover_ttl_seconds": 60}))
    listed = await lab.complete(ask(adapter="cfo-finance"))
    unlisted = await lab.complete(ask(adapter="exec-voice"))
    await lab.complete(ask("again", adapter="cfo-finance"))
    assert [r["model"] for r in server.requests] == ["cfo-finance", "tiny-base", "cfo-finance"]
    assert listed.fallback is None and "lists (GET /models)" in unlisted.fallback["reason"]
    assert server.model_listings == 1


async def test_a_model_not_found_answer_falls_back_once_and_is_remembered() -> None:
    # vLLM answers 404 for an adapter it does not serve; on_demand sends the name anyway (LoRAX style)
    async with FakeOpenAI(models=("tiny-base",), strict_models=True) as server:
        lab = router(endpoint(server, type="lorax", adapters={"on_demand": True, "discover_ttl_seconds": 60}))
        first = await lab.complete(ask("one"))
        second = await lab.complete(ask("two"))
    assert [r["model"] for r in server.requests] == ["cfo-finance", "tiny-base", "tiny-base"]
    assert first.content == "fake: one" and first.model == "tiny-base"
    assert "answered that adapter 'cfo-finance' does not exist" in first.fallback["reason"]
    assert "HTTP 404" in first.fallback["reason"] and "does not exist" in first.fallback["reason"]
    assert second.fallback["reason"].startswith(first.fallback["reason"]) and "asked again after 60 s" in \
        second.fallback["reason"]


async def test_without_fallback_an_unserved_adapter_fails_the_call(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, adapters={"served": [], "fallback": False}))
    with pytest.raises(InferenceError, match="adapters.fallback is false") as caught:
        await lab.complete(ask())
    assert type(caught.value) is InferenceError and server.requests == []


# -- retries ---------------------------------------------------------------------------------------


async def test_429_is_retried_after_the_retry_after_the_server_asks_for(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, retries={"max_attempts": 3, "backoff_seconds": 0}))
    server.fail(429, "slow down", headers={"Retry-After": "1"})
    started = time.monotonic()
    completion = await lab.complete(ask("after the wait"))
    assert completion.content == "fake: after the wait" and completion.attempts == 2
    gap = server.arrivals[1] - server.arrivals[0]
    assert 0.95 <= gap < 3, f"the second attempt came {gap:.2f} s after the first"
    assert time.monotonic() - started >= 0.95


async def test_retry_after_ms_and_backoff_on_5xx(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, retries={"max_attempts": 4, "backoff_seconds": 0.2, "max_backoff_seconds": 0.2}))
    server.fail(503, "warming up", headers={"retry-after-ms": "300"}).fail(500, "oops")
    completion = await lab.complete(ask())
    assert completion.attempts == 3
    first_gap, second_gap = (b - a for a, b in zip(server.arrivals, server.arrivals[1:]))
    assert 0.28 <= first_gap < 1.5, "retry-after-ms honoured"
    assert 0.14 <= second_gap < 1.5, "exponential back-off (0.2 s, minus at most 25 % jitter)"


async def test_a_retry_after_beyond_the_cap_ends_the_call_at_once(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, retries={"max_attempts": 5, "max_retry_after_seconds": 2}))
    server.fail(429, "quota exceeded", headers={"Retry-After": "120"})
    started = time.monotonic()
    with pytest.raises(InferenceUnavailable, match="asked to be called again after 120 s, longer than the 2 s"):
        await lab.complete(ask())
    assert time.monotonic() - started < 1 and len(server.requests) == 1


async def test_when_the_attempts_are_spent_the_error_stays_transient_for_the_activity_retry(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, retries={"max_attempts": 2, "backoff_seconds": 0}))
    server.fail(502, "bad gateway").fail(502, "bad gateway")
    with pytest.raises(InferenceUnavailable, match="HTTP 502"):
        await lab.complete(ask())
    assert len(server.requests) == 2


async def test_client_errors_are_not_retried(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, retries={"max_attempts": 3}))
    server.fail(400, "max_tokens is too large")
    with pytest.raises(InferenceError, match="HTTP 400") as caught:
        await lab.complete(ask())
    assert type(caught.value) is InferenceError and len(server.requests) == 1


# -- the circuit breaker ---------------------------------------------------------------------------


async def test_the_breaker_opens_after_consecutive_failures_fails_fast_then_lets_a_trial_through(
        server: FakeOpenAI) -> None:
    lab = router(endpoint(server, circuit_breaker={"failure_threshold": 2, "cooldown_seconds": 0.5}))
    server.fail(500, "GPU fell over").fail(500, "GPU fell over")
    for _ in range(2):
        with pytest.raises(InferenceUnavailable, match="HTTP 500"):
            await lab.complete(ask())
    with pytest.raises(InferenceUnavailable) as caught:
        await lab.complete(ask())
    message = str(caught.value)
    assert "inference endpoint 'lab' (127.0.0.1:" in message and "is failing" in message
    assert "after 2 failed calls in a row it is not called until" in message and "GPU fell over" in message
    assert len(server.requests) == 2, "an open breaker sends nothing"

    await asyncio.sleep(0.6)
    server.fail(500, "still down")
    with pytest.raises(InferenceUnavailable, match="still down"):
        await lab.complete(ask())  # the trial call fails: open again at once
    with pytest.raises(InferenceUnavailable, match="not called until"):
        await lab.complete(ask())
    assert len(server.requests) == 3

    await asyncio.sleep(0.6)
    assert (await lab.complete(ask("recovered"))).content == "fake: recovered"
    assert (await lab.complete(ask("and closed"))).content == "fake: and closed"


async def test_answers_that_are_request_errors_do_not_trip_the_breaker(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, circuit_breaker={"failure_threshold": 1, "cooldown_seconds": 30}))
    server.fail(400, "bad request").fail(422, "unprocessable")
    for _ in range(2):
        with pytest.raises(InferenceError):
            await lab.complete(ask())
    assert (await lab.complete(ask("fine"))).content == "fake: fine"


async def test_an_unreachable_endpoint_trips_its_breaker() -> None:
    async with FakeOpenAI() as gone:
        config = endpoint(gone, circuit_breaker={"failure_threshold": 1, "cooldown_seconds": 30})
    lab = router(config)
    with pytest.raises(InferenceUnavailable, match="unreachable"):
        await lab.complete(ask())
    with pytest.raises(InferenceUnavailable, match="not called until"):
        await lab.complete(ask())


# -- the response cache and token accounting --------------------------------------------------------


async def test_deterministic_requests_are_cached_and_a_hit_costs_no_tokens(server: FakeOpenAI, tables: Any) -> None:
    lab = router(endpoint(server), tables=tables)
    server.reply("Within budget.", usage={"prompt_tokens": 40, "completion_tokens": 3})
    first = await lab.complete(ask("invoice 9?", temperature=0.0, tools=[ECHO]))
    again = await lab.complete(ask("invoice 9?", temperature=0.0, tools=[ECHO]))
    assert len(server.requests) == 1
    assert first.cached is False and (first.usage.prompt_tokens, first.usage.completion_tokens) == (40, 3)
    assert again.cached is True and again.content == "Within budget." and again.attempts == 0
    assert (again.usage.prompt_tokens, again.usage.completion_tokens) == (0, 0)
    assert "saved 40 prompt and 3 completion tokens" in again.note

    # anything else in the request is another key: the tools, the adapter, the text, the parameters
    await lab.complete(ask("invoice 9?", temperature=0.0))
    await lab.complete(ask("invoice 9?", temperature=0.0, tools=[ECHO], adapter=None))
    await lab.complete(ask("invoice 9?", temperature=0.0, tools=[ECHO], max_tokens=50))
    assert len(server.requests) == 4

    report = await UsageLedger(tables).report(["cfo"], days=1)
    row = report["agents"]["cfo"]["by_adapter"]["cfo-finance"]
    assert (row["calls"], row["cache_hits"], row["saved_prompt_tokens"], row["saved_completion_tokens"]) == (4, 1, 40, 3)
    assert row["prompt_tokens"] == 40 + sum(len(r["messages"][0]["content"].split()) for r in server.requests[1:]
                                            if r["model"] == "cfo-finance")


async def test_sampled_requests_are_not_cached_unless_the_endpoint_says_so(server: FakeOpenAI, tables: Any) -> None:
    await router(endpoint(server), tables=tables).complete(ask("a", temperature=0.7))
    await router(endpoint(server), tables=tables).complete(ask("a", temperature=0.7))
    assert len(server.requests) == 2
    sampled = router(endpoint(server, id="lab2", cache={"sampled": True}), tables=tables)
    await sampled.complete(ask("b", temperature=0.7, endpoint_id="lab2"))
    assert (await sampled.complete(ask("b", temperature=0.7, endpoint_id="lab2"))).cached
    off = router(endpoint(server, id="lab3", cache={"enabled": False}), tables=tables)
    await off.complete(ask("c", temperature=0.0, endpoint_id="lab3"))
    await off.complete(ask("c", temperature=0.0, endpoint_id="lab3"))
    assert len(server.requests) == 5


async def test_cached_answers_expire_after_their_ttl(server: FakeOpenAI, tables: Any) -> None:
    lab = router(endpoint(server, cache={"ttl_seconds": 1}), tables=tables)
    await lab.complete(ask(temperature=0.0))
    assert (await lab.complete(ask(temperature=0.0))).cached
    await asyncio.sleep(1.1)
    assert not (await lab.complete(ask(temperature=0.0))).cached
    assert len(server.requests) == 2


async def test_tokens_are_counted_per_agent_and_per_adapter(server: FakeOpenAI, tables: Any) -> None:
    lab = router(endpoint(server, adapters={"served": ["cfo-finance", "exec-voice"]}), tables=tables)
    server.reply("a", usage={"prompt_tokens": 10, "completion_tokens": 1})
    server.reply("b", usage={"prompt_tokens": 20, "completion_tokens": 2})
    server.reply("c", usage={"prompt_tokens": 30, "completion_tokens": 3})
    server.reply("d", usage={"prompt_tokens": 40, "completion_tokens": 4})
    await lab.complete(ask(agent="cfo", adapter="cfo-finance"))
    await lab.complete(ask(agent="cfo", adapter="cfo-finance"))
    await lab.complete(ask(agent="ceo", adapter="exec-voice"))
    await lab.complete(ask(agent="ceo", adapter="ops-runbooks"))  # not served: base model, counted as a fallback
    report = await UsageLedger(tables).report(["cfo", "ceo", "nobody"], days=7)
    cfo, ceo = report["agents"]["cfo"], report["agents"]["ceo"]
    assert set(report["agents"]) == {"cfo", "ceo"}
    assert cfo["by_adapter"]["cfo-finance"] == cfo["total"]
    assert (cfo["total"]["calls"], cfo["total"]["prompt_tokens"], cfo["total"]["completion_tokens"]) == (2, 30, 3)
    assert ceo["by_adapter"]["exec-voice"]["prompt_tokens"] == 30
    assert ceo["by_adapter"]["ops-runbooks"]["fallbacks"] == 1 and ceo["by_endpoint"]["lab"]["calls"] == 2
    assert "not among the adapters" in ceo["last_fallback"]["ops-runbooks"]
    assert report["total"]["prompt_tokens"] == 100 and report["total"]["completion_tokens"] == 10


async def test_concurrent_updates_of_one_usage_row_lose_nothing(server: FakeOpenAI, tables: Any) -> None:
    lab = router(endpoint(server), tables=tables)
    await asyncio.gather(*(lab.complete(ask(f"n{i}")) for i in range(20)))
    row = (await UsageLedger(tables).report(["cfo"], days=1))["agents"]["cfo"]["total"]
    assert row["calls"] == 20 and row["prompt_tokens"] == 20


# -- the bounded pool ------------------------------------------------------------------------------


async def test_concurrent_turns_share_a_bounded_pool_per_endpoint() -> None:
    async with FakeOpenAI(models=("tiny-base",), latency=0.3) as server:
        narrow = router(endpoint(server, concurrency=2))
        started = time.monotonic()
        await asyncio.gather(*(narrow.complete(ask(agent=f"agent-{i}", adapter=None)) for i in range(6)))
        narrow_time = time.monotonic() - started
        assert server.max_in_flight == 2, "never more than the pool's size in flight"
        assert narrow_time >= 0.85, "six calls two at a time take three rounds"

        server.max_in_flight = 0
        wide = router(endpoint(server, id="wide", concurrency=6))
        started = time.monotonic()
        await asyncio.gather(*(wide.complete(ask(agent=f"agent-{i}", adapter=None, endpoint_id="wide"))
                               for i in range(6)))
        assert server.max_in_flight == 6, "calls of different agents go out together"
        assert time.monotonic() - started < narrow_time


# -- structured output -----------------------------------------------------------------------------

SCHEMA = {"type": "json_schema", "json_schema": {"name": "verdict", "strict": True, "schema": {
    "type": "object", "properties": {"aligned": {"type": "boolean"}}, "required": ["aligned"]}}}


async def test_structured_output_is_sent_only_where_the_endpoint_supports_it(server: FakeOpenAI) -> None:
    await router(endpoint(server, structured_output=True)).complete(ask(response_format=SCHEMA))
    await router(endpoint(server, id="plain")).complete(ask(response_format=SCHEMA, endpoint_id="plain"))
    await router(endpoint(server, id="lorax", type="lorax", structured_output=True)).complete(
        ask(response_format=SCHEMA, endpoint_id="lorax"))
    supported, plain, lorax = server.requests
    assert supported["response_format"] == SCHEMA
    assert "response_format" not in plain
    assert lorax["response_format"] == {"type": "json_object", "schema": SCHEMA["json_schema"]["schema"]}


# -- credentials -----------------------------------------------------------------------------------


async def test_a_key_reference_is_resolved_at_use_and_sent_as_bearer_or_api_key(server: FakeOpenAI) -> None:
    environ = {"LAB_KEY": KEY, "LAB_URL": server.base_url}
    bearer = router(endpoint(server, url="${env:LAB_URL}", auth={"type": "key", "key": "${env:LAB_KEY}"}),
                    environ=environ)
    await bearer.complete(ask())
    azure = router(endpoint(server, id="azure", type="azure_openai", api_version="2024-10-21",
                            auth={"type": "key", "key": "${secret:lab-key}", "header": "api-key"}),
                   environ={"LAB_KEY": KEY})
    await azure.complete(ask(endpoint_id="azure"))
    assert server.authorizations == [f"Bearer {KEY}", None]
    assert server.headers[1]["api-key"] == KEY

    server.fail(401, f"invalid key {KEY}")
    with pytest.raises(InferenceError) as caught:
        await bearer.complete(ask("again"))
    assert KEY not in str(caught.value) and "***" in str(caught.value)


async def test_a_missing_key_names_the_reference_and_sends_nothing(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, auth={"type": "key", "key": "${secret:lab-key}"}))
    with pytest.raises(InferenceError, match=r"\$\{secret:lab-key\} is not set \(looked for environment variable LAB_KEY\)"):
        await lab.complete(ask())
    assert server.requests == []


async def test_entra_tokens_are_asked_for_with_the_endpoint_types_scope(server: FakeOpenAI) -> None:
    asked: list[tuple[str, str | None]] = []

    def tokens(scope: str, client_id: str | None):
        asked.append((scope, client_id))

        async def token() -> str:
            return "entra-token-for-" + scope.split("/")[2]
        return token

    client_id = "00000000-0000-0000-0000-00000000abcd"
    lab = router(endpoint(server, type="azureml", auth={"type": "entra", "client_id": client_id},
                          headers={"azureml-model-deployment": "blue"}), token_provider=tokens)
    await lab.complete(ask())
    assert asked == [("https://ml.azure.com/.default", client_id)]
    assert server.authorizations == ["Bearer entra-token-for-ml.azure.com"]
    assert server.headers[0]["azureml-model-deployment"] == "blue"


def test_the_entra_provider_is_azure_identity_built_once_per_scope_and_calls_nobody_until_asked() -> None:
    """Entra ID cannot be reached from the tests: this checks the real objects are built (without a
    token request) and shared; getting a token needs a managed identity or ``az login``."""
    from azure.identity import DefaultAzureCredential

    first = entra_token_provider("https://cognitiveservices.azure.com/.default")
    again = entra_token_provider("https://cognitiveservices.azure.com/.default")
    other = entra_token_provider("https://ml.azure.com/.default", "00000000-0000-0000-0000-00000000abcd")
    assert first is again and first is not other
    assert isinstance(first.credential, DefaultAzureCredential)  # type: ignore[attr-defined]
    assert other.scope == "https://ml.azure.com/.default"  # type: ignore[attr-defined]


# -- which endpoint --------------------------------------------------------------------------------


async def test_a_disabled_endpoint_means_the_offline_provider_labelled_with_the_reason(server: FakeOpenAI) -> None:
    lab = router(endpoint(server, enabled=False))
    completion = await lab.complete(ask("invoice 3"))
    assert server.requests == [] and not lab.uses_model("lab")
    assert completion.provider == "offline" and completion.content.startswith("[offline]")
    assert completion.model == "offline/cfo-finance" and completion.endpoint == "lab" and completion.attempts == 0
    assert completion.note == "offline: inference endpoint 'lab' is disabled (enabled: false)"


async def test_no_endpoint_and_no_default_endpoint_is_offline_and_an_unknown_endpoint_an_error() -> None:
    nothing = router()
    completion = await nothing.complete(ask(endpoint_id=None))
    assert completion.provider == "offline" and "AOS_INFERENCE_ENDPOINT is empty" in completion.note
    with pytest.raises(InferenceError, match="inference endpoint 'nowhere' is not declared"):
        await nothing.complete(ask(endpoint_id="nowhere"))


async def test_the_settings_default_endpoint_sends_the_adapter_and_falls_back_on_404() -> None:
    async with FakeOpenAI(models=("base",), strict_models=True) as server:
        default = router(environ={"AOS_INFERENCE_ENDPOINT": server.base_url, "AOS_INFERENCE_MODEL": "base"})
        completion = await default.complete(ask(endpoint_id=None, adapter="finance-lora"))
        server.fail(500, "down")
        with pytest.raises(InferenceUnavailable):
            await default.complete(ask("b", endpoint_id=None, adapter=None))
    assert [r["model"] for r in server.requests] == ["finance-lora", "base", "base"]
    assert completion.endpoint == "default" and completion.fallback["model"] == "base"
    assert len(server.requests) == 3, "the default endpoint makes one attempt per call: the activity retry owns retries"


async def test_the_endpoint_config_is_read_at_each_call(server: FakeOpenAI) -> None:
    declared = {"lab": endpoint(server)}
    lab = InferenceRouter(environ={}, endpoints=lambda: declared)
    await lab.complete(ask())
    declared["lab"] = endpoint(server, adapters={"served": []})
    assert (await lab.complete(ask())).fallback is not None
    declared["lab"] = endpoint(server, enabled=False)
    assert (await lab.complete(ask())).provider == "offline"
    assert [r["model"] for r in server.requests] == ["cfo-finance", "tiny-base"]


async def test_a_full_tool_round_trip_through_the_router(server: FakeOpenAI) -> None:
    lab = router(endpoint(server))
    server.reply(None, tool_calls=[{"id": "call_1", "name": ECHO.name, "arguments": {"message": "hi"}}])
    first = await lab.complete(ask("echo hi", tools=[ECHO]))
    assert [(c.name, c.arguments) for c in first.tool_calls] == [("everything__echo", {"message": "hi"})]
    offered = server.requests[0]["tools"][0]["function"]
    assert offered == {"name": "everything__echo", "description": "Echoes the message", "parameters": ECHO.parameters}
    assert json.loads(json.dumps(first.to_dict()))["tool_calls"][0]["arguments"] == {"message": "hi"}
