"""The inference port: what a turn asks of a model, and what comes back.

Plain, JSON-ready dataclasses, because requests and completions cross Durable activity
boundaries. Shaped after the OpenAI chat-completions wire format (messages, tools with JSON
Schema parameters, tool calls with JSON arguments), which every endpoint AOS targets speaks.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from kernel.governance import secret_values

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str  # "<server>__<tool>", the name offered in ToolSpec
    arguments: dict[str, Any]


@dataclass(frozen=True)
class ChatMessage:
    role: Role
    content: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    tool_call_id: str | None = None


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ChatRequest:
    agent_id: str
    messages: list[ChatMessage]
    tools: list[ToolSpec] = field(default_factory=list)
    model: str | None = None  # the model name to send as is (a provider's default when empty)
    temperature: float = 0.2
    max_tokens: int = 1024
    endpoint: str | None = None  # the endpoint id the agent names; None: the app settings' default endpoint
    adapter: str | None = None  # the agent's LoRA adapter; the router decides whether it is served
    response_format: dict[str, Any] | None = None  # OpenAI shape: {"type": "json_schema", "json_schema": {...}}


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int


@dataclass(frozen=True)
class Completion:
    content: str
    tool_calls: list[ToolCall]
    provider: str  # "offline" for the embedded default, so every output says what produced it
    model: str
    usage: Usage  # tokens this call cost: zero for a cached answer
    endpoint: str | None = None  # the endpoint id that answered ("default": the app settings' endpoint)
    adapter: str | None = None  # the adapter the agent asked for
    fallback: dict[str, Any] | None = None  # {"adapter", "fallback": "base model", "model", "reason"} when not served
    cached: bool = False  # answered from the response cache, without calling the endpoint
    attempts: int = 1  # HTTP attempts this answer took (0: no call was made)
    note: str | None = None  # why the offline provider answered, or where a cached answer came from

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class InferenceProvider(Protocol):
    name: str

    async def complete(self, request: ChatRequest) -> Completion: ...


def tool_name(server: str, tool: str) -> str:
    """The name a tool is offered to a model under (OpenAI tool names allow no '/')."""
    return f"{server}__{tool}"


def split_tool_name(name: str) -> tuple[str, str]:
    server, sep, tool = name.partition("__")
    if not sep or not server or not tool:
        raise ValueError(f"tool name '{name}' is not '<server>__<tool>'")
    return server, tool


class InferenceError(Exception):
    """A model call failed: a 4xx answer, a malformed response, or a request that cannot be sent.

    Messages name the endpoint host and the HTTP status where there is one, never an API key.
    Retrying the same request will not help; see the subclasses for the transient cases.
    ``status`` is the HTTP status when the endpoint answered one, ``retry_after`` the seconds its
    Retry-After (or retry-after-ms) header asked for.
    """

    def __init__(self, message: str, *, status: int | None = None, retry_after: float | None = None) -> None:
        super().__init__(secret_values.mask_known(message))  # an endpoint may echo a key in its error body
        self.status = status
        self.retry_after = retry_after


class InferenceTimeout(InferenceError):
    """The endpoint did not answer within the configured timeout (transient; may be retried)."""


class InferenceUnavailable(InferenceError):
    """The endpoint could not be reached or is overloaded: connection refused, 5xx, 429 (transient)."""
