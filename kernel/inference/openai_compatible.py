"""The OpenAI-compatible provider: chat completions on any endpoint that speaks the OpenAI wire format.

Azure OpenAI (``https://<resource>.openai.azure.com/openai/v1/``), vLLM, LoRAX and Ollama all
accept ``POST <base>/chat/completions``; this provider maps the inference port onto it with the
official ``openai`` client and maps the answer (text, tool calls, usage) back.

* The model name sent is ``request.model`` (an agent's LoRA adapter name, which selects the
  adapter on a multi-LoRA server) or else the default model (``AOS_INFERENCE_MODEL``).
* The ``openai`` client's own retries are off (``max_retries=0``); retries happen here, as the
  ``retry`` policy says (:mod:`kernel.inference.retry`: 429, 408, 5xx, timeouts and refused
  connections, honouring Retry-After up to a cap). The default policy is one attempt: the Durable
  activity layer owns retries and tells transient failures (:class:`InferenceTimeout`,
  :class:`InferenceUnavailable`) from permanent ones (plain :class:`InferenceError`). The attempts
  an answer took are on ``Completion.attempts``.
* Credentials: an API key sent as ``Authorization: Bearer`` (or as Azure's ``api-key`` header),
  or a token provider (Microsoft Entra ID) asked before each attempt, or nothing at all.
* ``timeout`` bounds each attempt as a whole, the answer included.
* Error messages name the endpoint host and the HTTP status, never the API key; the ``openai``
  exception is not chained (``from None``) so a logged traceback cannot carry request headers.
* With no API key, no ``Authorization`` header is sent at all (a keyless local server, or one
  behind network controls).

One ``AsyncOpenAI`` client per call, opened and closed inside ``complete``. A client's
connection pool (httpx) belongs to the event loop that opened it: reused from another loop it
fails ("attached to a different loop", "Event loop is closed"), and a client left behind by a
loop that has ended cannot be closed any more, so its clean-up errors surface later in whatever
loop happens to be running. Activities, the CLI (``asyncio.run``) and tests all start loops of
their own, so the provider keeps no client between calls and is safe from any loop, or from
several at once. The price is one connection set-up per model call, small next to the seconds a
completion takes.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from kernel.inference.port import (
    ChatMessage,
    ChatRequest,
    Completion,
    InferenceError,
    InferenceTimeout,
    InferenceUnavailable,
    ToolCall,
    ToolSpec,
    Usage,
)
from kernel.inference.retry import NO_RETRY, RETRYABLE_STATUSES, RetryPolicy, retry_after_seconds

if TYPE_CHECKING:  # the openai SDK costs ~0.25 s to import: loaded on the first call, not at app start
    import openai

NAME = "openai-compatible"
# The openai client refuses to start without some key; with no key configured this placeholder
# satisfies it, and every request explicitly omits the Authorization header, so it is never sent.
_NO_KEY = "no-key-configured"
_CLIP = 200


def endpoint_host(base_url: str) -> str:
    """``host[:port]`` of ``base_url`` (never user info, path or query), for messages and health."""
    try:
        parts = urlsplit(base_url.strip())
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<invalid endpoint URL>"
    if not host:
        return "<invalid endpoint URL>"
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    return f"{host}:{port}" if port else host


class OpenAICompatibleProvider:
    """The ``InferenceProvider`` port on an OpenAI-compatible chat-completions endpoint."""

    name = NAME

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None,
        default_model: str,
        timeout: float,
        key_header: Literal["authorization", "api-key"] = "authorization",
        token_provider: Callable[[], Awaitable[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        api_version: str | None = None,
        retry: RetryPolicy = NO_RETRY,
        sleep: Callable[[float], Awaitable[Any]] = asyncio.sleep,
    ) -> None:
        if not base_url or not base_url.strip():
            raise ValueError("OpenAICompatibleProvider needs a base URL")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        if api_key and token_provider is not None:
            raise ValueError("give an API key or a token provider, not both")
        self._base_url = base_url.strip()
        self._api_key = api_key or None
        self._key_header = key_header
        self._token_provider = token_provider
        self._headers = dict(headers or {})
        self._api_version = api_version
        self._default_model = default_model.strip()
        self._timeout = float(timeout)
        self._retry = retry
        self._sleep = sleep
        self._host = endpoint_host(self._base_url)

    @property
    def host(self) -> str:
        return self._host

    def __repr__(self) -> str:
        auth = "token" if self._token_provider else ("set" if self._api_key else "none")
        return (f"OpenAICompatibleProvider(host={self._host!r}, default_model={self._default_model!r}, "
                f"api_key={auth}, timeout={self._timeout})")

    # -- the port --------------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        model = (request.model or "").strip() or self._default_model
        if not model:
            raise InferenceError(
                f"no model to ask {self._host}: the request names no model (no agent adapter) and "
                "AOS_INFERENCE_MODEL is empty; set one of them"
            )
        body: dict[str, Any] = {
            "model": model,
            "messages": [_wire_message(message) for message in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
        }
        if request.tools:
            body["tools"] = [_wire_tool(spec) for spec in request.tools]
        if request.response_format:
            body["response_format"] = request.response_format
        attempt = 1
        while True:
            try:
                response = await self._attempt(body, model)
            except (InferenceTimeout, InferenceUnavailable) as error:
                if attempt >= self._retry.max_attempts:
                    raise
                wait = self._retry.delay(attempt, error.retry_after)
                if wait is None:
                    raise type(error)(
                        f"{error}; it asked to be called again after {error.retry_after:g} s, longer than the "
                        f"{self._retry.max_retry_after_seconds:g} s a call waits",
                        status=error.status, retry_after=error.retry_after) from None
                await self._sleep(wait)
                attempt += 1
                continue
            try:
                return replace(self._completion(response, model), attempts=attempt)
            except (AttributeError, TypeError, KeyError, ValueError):
                raise InferenceError(
                    f"inference endpoint {self._host} sent a malformed chat completion (model '{model}')"
                ) from None

    async def list_models(self) -> list[str]:
        """The model names the endpoint lists (``GET <base>/models``): base models and served adapters."""
        import openai

        try:
            async with asyncio.timeout(self._timeout):
                async with await self._client() as client:
                    page = await client.models.list(**self._auth_options())
                    return [str(item.id) for item in page.data]
        except TimeoutError:
            raise InferenceTimeout(f"inference endpoint {self._host} did not list its models within {self._timeout:g} s") from None
        except openai.APIStatusError as error:
            raise self._status_error(error, "(model list)") from None
        except openai.OpenAIError as error:
            raise InferenceUnavailable(
                f"inference endpoint {self._host} did not list its models: {type(error).__name__}: "
                f"{self._scrub(_cause(error))}") from None

    async def close(self) -> None:
        """Nothing to release: every call opens and closes its own client (see the module docstring)."""
        return None

    # -- internals -------------------------------------------------------------------------------

    async def _attempt(self, body: dict[str, Any], model: str) -> Any:
        """One HTTP attempt; every failure comes out as an :class:`InferenceError` (transient ones as subclasses)."""
        import openai

        try:
            async with asyncio.timeout(self._timeout):
                async with await self._client() as client:
                    return await client.chat.completions.create(**body, **self._auth_options())
        except (openai.APITimeoutError, TimeoutError):
            raise InferenceTimeout(
                f"inference endpoint {self._host} did not answer within {self._timeout:g} s (model '{model}')"
            ) from None
        except openai.APIConnectionError as error:
            raise InferenceUnavailable(
                f"inference endpoint {self._host} is unreachable (model '{model}'): {self._scrub(_cause(error))}"
            ) from None
        except openai.APIStatusError as error:
            raise self._status_error(error, model) from None
        except openai.APIResponseValidationError as error:
            raise InferenceError(
                f"inference endpoint {self._host} sent a response that is not a chat completion "
                f"(HTTP {error.status_code})"
            ) from None
        except openai.OpenAIError as error:
            raise InferenceError(
                f"request to inference endpoint {self._host} failed: {type(error).__name__}: {self._scrub(str(error))}"
            ) from None
        except json.JSONDecodeError:  # the body claimed to be JSON and is not
            raise InferenceError(f"inference endpoint {self._host} sent a response body that is not valid JSON") from None

    async def _client(self) -> openai.AsyncOpenAI:
        import openai

        key = self._api_key
        if self._token_provider is not None:
            try:
                key = await self._token_provider()
            except Exception as error:  # azure-identity raises several kinds; none may leak a token
                raise InferenceUnavailable(
                    f"no Microsoft Entra ID token for inference endpoint {self._host}: {type(error).__name__}: "
                    f"{_clip(str(error))}") from None
        return openai.AsyncOpenAI(
            base_url=self._base_url,
            api_key=key if key and self._key_header == "authorization" else _NO_KEY,
            timeout=self._timeout,
            max_retries=0,
            default_headers=self._headers or None,
            default_query={"api-version": self._api_version} if self._api_version else None,
        )

    def _auth_options(self) -> dict[str, Any]:
        """Per-request headers: no Authorization header without a bearer credential, Azure's api-key header if asked."""
        import openai

        if self._token_provider is not None:
            return {}
        if self._api_key is None:
            return {"extra_headers": {"Authorization": openai.omit}}
        if self._key_header == "api-key":
            return {"extra_headers": {"Authorization": openai.omit, "api-key": self._api_key}}
        return {}

    def _completion(self, response: Any, model: str) -> Completion:
        from openai.types.chat import ChatCompletion

        if not isinstance(response, ChatCompletion):
            raise InferenceError(
                f"inference endpoint {self._host} sent a response that is not a chat completion "
                f"({type(response).__name__})"
            )
        if not response.choices:
            raise InferenceError(f"inference endpoint {self._host} sent a completion with no choices (model '{model}')")
        message = response.choices[0].message
        if message is None:
            raise InferenceError(f"inference endpoint {self._host} sent a choice with no message (model '{model}')")
        calls = [self._tool_call(call) for call in message.tool_calls or []]
        usage = response.usage
        return Completion(
            content=message.content or "",
            tool_calls=calls,
            provider=NAME,
            model=response.model or model,
            usage=Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)),
        )

    def _tool_call(self, call: Any) -> ToolCall:
        kind = getattr(call, "type", None)
        if kind != "function":
            raise InferenceError(
                f"inference endpoint {self._host} requested a tool call of type '{kind}'; "
                "only function tool calls are offered"
            )
        function = getattr(call, "function", None)
        if function is None or not isinstance(getattr(function, "name", None), str) or not function.name:
            raise InferenceError(f"inference endpoint {self._host} sent a function tool call with no function name")
        if not isinstance(getattr(call, "id", None), str) or not call.id:
            raise InferenceError(
                f"inference endpoint {self._host} sent a call of tool '{function.name}' with no call id"
            )
        raw = function.arguments or ""
        if not isinstance(raw, str):
            raise InferenceError(
                f"the model at {self._host} called tool '{function.name}' (call {call.id}) with arguments "
                "that are not a JSON string"
            )
        if not raw.strip():
            return ToolCall(call.id, function.name, {})
        try:
            arguments = json.loads(raw)
        except json.JSONDecodeError as error:
            raise InferenceError(
                f"the model at {self._host} called tool '{function.name}' (call {call.id}) with arguments "
                f"that are not valid JSON ({error.msg} at position {error.pos}): {_clip(raw)!r}"
            ) from None
        if not isinstance(arguments, dict):
            raise InferenceError(
                f"the model at {self._host} called tool '{function.name}' (call {call.id}) with arguments "
                f"that are JSON {type(arguments).__name__}, not an object: {_clip(raw)!r}"
            )
        return ToolCall(call.id, function.name, arguments)

    def _status_error(self, error: openai.APIStatusError, model: str) -> InferenceError:
        status = error.status_code
        detail = self._scrub(_server_message(error))
        text = f"inference endpoint {self._host} answered HTTP {status} (model '{model}')"
        if detail:
            text += f": {detail}"
        retry_after = retry_after_seconds(getattr(error.response, "headers", None))
        if status == 429 or status >= 500:
            return InferenceUnavailable(text, status=status, retry_after=retry_after)
        if status in RETRYABLE_STATUSES:  # 408: the server gave up waiting for the request
            return InferenceTimeout(text, status=status, retry_after=retry_after)
        return InferenceError(text, status=status)

    def _scrub(self, text: str) -> str:
        """``text`` clipped, with the API key removed should a server or library echo it."""
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return _clip(text)


def _wire_message(message: ChatMessage) -> dict[str, Any]:
    if message.role == "tool":
        if not message.tool_call_id:
            raise InferenceError("a tool message has no tool_call_id; it cannot be matched to the call it answers")
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if message.role == "assistant" and message.tool_calls:
        return {
            "role": "assistant",
            "content": message.content or None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": json.dumps(call.arguments)},
                }
                for call in message.tool_calls
            ],
        }
    if message.role not in ("system", "user", "assistant"):
        raise InferenceError(f"unknown message role '{message.role}'")
    return {"role": message.role, "content": message.content}


def _wire_tool(spec: ToolSpec) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": spec.name, "description": spec.description, "parameters": spec.parameters},
    }


def _server_message(error: openai.APIStatusError) -> str:
    body = error.body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and isinstance(inner.get("message"), str):
            return inner["message"]
        if isinstance(inner, str):
            return inner
    return ""


def _cause(error: BaseException) -> str:
    cause = error.__cause__ or error.__context__
    return f"{type(cause).__name__}: {cause}" if cause is not None else str(error)


def _clip(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= _CLIP else text[: _CLIP - 1] + "…"
