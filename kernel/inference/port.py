"""The inference port: what a turn asks of a model, and what comes back.

Plain, JSON-ready dataclasses, because requests and completions cross Durable activity
boundaries. Shaped after the OpenAI chat-completions wire format (messages, tools with JSON
Schema parameters, tool calls with JSON arguments), which every endpoint AOS targets speaks.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, Protocol

from kernel.governance import secret_values

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str  # the name offered in ToolSpec (``tool_name``: "<server>__<tool>", "." written "_")
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


#: What OpenAI (and the endpoints that copy it) accept as a function name.
TOOL_NAME_PATTERN = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
TOOL_NAME_LIMIT = 64
TOOL_SEPARATOR = "__"
_DIGEST = 10  # hex characters of the hash that ends a name too long (or too odd) to spell out


def tool_name(server: str, tool: str) -> str:
    """The name the tool of ``server`` is offered to a model under: ``<server>__<tool>``, with a
    namespace's '.' written '_' (``default.everything`` → ``default_everything__echo``), since
    function names allow only ``[a-zA-Z0-9_-]{1,64}``. Server and namespace ids hold no '_', so this
    decodes without a table. A name that would be longer, or a tool name with other characters,
    becomes a readable prefix plus a stable hash (``…_h<10 hex>``), which :func:`split_tool_name`
    decodes against the tools offered."""
    readable = f"{server.replace('.', '_')}{TOOL_SEPARATOR}{tool}"
    if TOOL_NAME_PATTERN.match(readable):
        return readable
    digest = hashlib.sha256(f"{server}\0{tool}".encode()).hexdigest()[:_DIGEST]
    head = re.sub(r"[^a-zA-Z0-9_-]", "-", readable)[:TOOL_NAME_LIMIT - _DIGEST - 2]
    return f"{head}_h{digest}"


def split_tool_name(name: str, offered: Iterable[tuple[str, str]] = ()) -> tuple[str, str]:
    """``(server, tool)`` of a name :func:`tool_name` made. ``offered``: the ``(server, tool)`` pairs
    offered to the model, which a hashed name is looked up in. Raises ``ValueError`` naming the
    name when it is neither offered nor ``<server>__<tool>``."""
    for server, tool in offered:
        if tool_name(server, tool) == name:
            return server, tool
    server, sep, tool = name.partition(TOOL_SEPARATOR)
    if not sep or not server or not tool:
        raise ValueError(f"tool name '{name}' is not '<server>__<tool>' and names no tool offered to the model")
    return server.replace("_", "."), tool


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
