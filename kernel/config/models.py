"""Pydantic models of every config document: the single source of truth.

The JSON Schemas in ``schemas/`` are exported from these models (``aos schema``), and a test fails
when the committed schemas drift. Models are strict: unknown keys are errors, so a typo never
silently turns a setting off.

Document kinds:

* ``agent`` (files in ``agent_configs/``; ``kind`` may be omitted there),
* ``adapter`` (a LoRA adapter; its own document in ``agent_configs/`` with ``kind: adapter``),
* ``mcp_server`` (files in ``mcp_configs/``; ``kind`` may be omitted there).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from kernel import ncrontab

# Ids end up in entity keys, Service Bus rule names and SQL filter literals: keep them plain.
ID_PATTERN = r"^[a-z][a-z0-9-]{0,62}$"
ID_RULE = "a lowercase letter followed by up to 62 lowercase letters, digits or hyphens"
TOOL_PATTERN = r"^[A-Za-z0-9_.-]{1,128}$"
TOOL_RULE = "1-128 letters, digits, '_', '-' or '.' (MCP tool name rules)"
EVENT_PATTERN = r"^[A-Za-z0-9_.*-]{1,200}$"
EVENT_RULE = "letters, digits, '.', '_', '-' and '*' wildcards, such as 'finance.*'"
TOPIC_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,259}$"
TOPIC_RULE = "a Service Bus topic name: letters, digits, '.', '_' or '-'"
VERSION_PATTERN = r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$"
VERSION_RULE = "a version such as '1', '1.2.0' or '2026-11-01'"

Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
ToolName = Annotated[str, StringConstraints(pattern=TOOL_PATTERN)]
EventPattern = Annotated[str, StringConstraints(pattern=EVENT_PATTERN)]
TopicName = Annotated[str, StringConstraints(pattern=TOPIC_PATTERN)]
Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
NonEmptyText = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]

#: Human wording for pattern errors, keyed by the regex pydantic reports.
PATTERN_RULES = {
    ID_PATTERN: ID_RULE,
    TOOL_PATTERN: TOOL_RULE,
    EVENT_PATTERN: EVENT_RULE,
    TOPIC_PATTERN: TOPIC_RULE,
    VERSION_PATTERN: VERSION_RULE,
}

DEFAULT_EVENTS_TOPIC = "agent-events"


class Strict(BaseModel):
    """Base of every config model: unknown keys are errors, values are validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, populate_by_name=True)


class Document(Strict):
    """Fields every top-level document may carry."""

    schema_: str | None = Field(
        default=None,
        alias="$schema",
        description="Path or URL of this document's JSON Schema, for editor completion.",
    )


# --------------------------------------------------------------------------- agents


class PurposeScope(Strict):
    """What the agent works on and what it must decline."""

    in_scope: list[NonEmptyText] = Field(
        default_factory=list, description="Topics and event kinds the agent is responsible for."
    )
    out_of_scope: list[NonEmptyText] = Field(
        default_factory=list, description="Topics the agent must decline, with a reason."
    )


class Goal(Strict):
    """A goal the agent starts with; goals evolve at run time from turn outcomes."""

    id: Identifier
    description: NonEmptyText
    priority: int = Field(default=3, ge=1, le=5, description="1 is most important.")
    target: str | None = Field(default=None, description="A measurable target, if any.")


class AdapterReference(Strict):
    """Which LoRA adapter the agent speaks through, pinned or floating."""

    name: Identifier = Field(description="The adapter's name (an `adapter` document).")
    version: Version = Field(
        default="latest",
        description="Pin a trained version, or 'latest' to float to the newest registered one.",
    )


class ModelSettings(Strict):
    """The model an agent calls; the adapter selects the served LoRA on a multi-LoRA endpoint."""

    endpoint: Identifier | None = Field(
        default=None,
        description="Inference endpoint id; none means the embedded offline provider.",
    )
    adapter: AdapterReference | None = None
    temperature: float = Field(default=0.2, ge=0.0, le=2.0)
    max_tokens: int = Field(default=1024, ge=1, le=131072)
    max_steps: int = Field(
        default=6, ge=1, le=50, description="Model calls per turn (each may request tool calls) before the turn stops."
    )
    max_tool_calls: int = Field(default=16, ge=0, le=200, description="Tool calls per turn, at most.")


class ToolGrant(Strict):
    """Tools an agent may use: a whole MCP server, or only the named tools of it."""

    server: Identifier = Field(description="The MCP server id (an `mcp_server` document).")
    tools: list[ToolName] | None = Field(
        default=None, description="Only these tools of the server; omit to grant the whole server."
    )
    requires_approval: bool | list[ToolName] = Field(
        default=False,
        description="true: every call of this grant waits for a human decision; a list: only calls of "
        "these tools. (The agent's `approvals` section does the same with a deadline of your choice.)",
    )

    @field_validator("tools")
    @classmethod
    def _tools_not_empty(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and not value:
            raise ValueError("an empty tool list grants nothing: omit 'tools' to grant the server")
        return value


class Subscription(Strict):
    """Events that wake the agent besides those addressed to it directly."""

    topic: TopicName = Field(default=DEFAULT_EVENTS_TOPIC, description="Service Bus topic.")
    event_types: list[EventPattern] = Field(
        min_length=1, description="Event types to receive; '*' matches any run of characters."
    )


class Schedule(Strict):
    """A timer that wakes the agent with a synthetic event."""

    name: Identifier
    cron: str = Field(description="Six-field NCRONTAB: {second} {minute} {hour} {day} {month} {dow}.")
    event_type: EventPattern = Field(default="schedule.tick")
    data: dict[str, Any] = Field(default_factory=dict)

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        ncrontab.validate(value)
        return value

    @field_validator("event_type")
    @classmethod
    def _concrete_event_type(cls, value: str) -> str:
        if "*" in value:
            raise ValueError("a scheduled event type is sent, so it cannot contain '*'")
        return value


class MemoryBudget(Strict):
    """Bounds that keep an agent's entity state O(1) however long it lives."""

    max_state_bytes: int = Field(
        default=32768,
        ge=8192,
        le=1_048_576,
        description="Upper bound of the entity state (its event inbox excepted).",
    )
    window_turns: int = Field(default=12, ge=1, le=200, description="Recent turns kept in full.")
    summary_max_chars: int = Field(default=4000, ge=200, le=100_000)
    pinned_facts_max: int = Field(default=50, ge=0, le=1000)


class ApprovalRule(Strict):
    """Tool calls that wait for a human decision before they run."""

    server: Identifier
    tools: list[ToolName] | None = Field(
        default=None, description="These tools of the server; omit for every tool of it."
    )
    timeout_seconds: int = Field(default=3600, ge=1, le=30 * 24 * 3600)
    on_timeout: Literal["decline"] = Field(
        default="decline", description="What happens when nobody answers in time."
    )


class AgentConfig(Document):
    """A perpetual, purpose-driven agent."""

    kind: Literal["agent"] = "agent"
    id: Identifier
    display_name: NonEmptyText
    description: str | None = None
    purpose: NonEmptyText = Field(description="Why the agent exists; every event is judged by it.")
    scope: PurposeScope = Field(default_factory=PurposeScope)
    success_criteria: list[NonEmptyText] = Field(default_factory=list)
    goals: list[Goal] = Field(default_factory=list)
    model: ModelSettings = Field(default_factory=ModelSettings)
    tools: list[ToolGrant] = Field(default_factory=list)
    subscriptions: list[Subscription] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    memory: MemoryBudget = Field(default_factory=MemoryBudget)
    approvals: list[ApprovalRule] = Field(default_factory=list)
    enabled: bool = True

    @model_validator(mode="after")
    def _unique_names(self) -> "AgentConfig":
        _require_unique("goals", [goal.id for goal in self.goals])
        _require_unique("schedules", [schedule.name for schedule in self.schedules])
        _require_unique("tools", [grant.server for grant in self.tools])
        return self


def _require_unique(field: str, values: list[str]) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"'{value}' appears twice in {field}")
        seen.add(value)


# --------------------------------------------------------------------------- adapters


class DataLocation(Strict):
    """Where training or evaluation data lives: a repo-relative path or an Azure ML URI."""

    uri: NonEmptyText = Field(
        description="A path such as 'data/cfo/train.jsonl' or 'azureml://datastores/…/paths/…'."
    )
    format: Literal["chat-jsonl"] = "chat-jsonl"


class AdapterConfig(Document):
    """A LoRA adapter: how it is trained and which base model it extends."""

    kind: Literal["adapter"]
    name: Identifier
    version: Version = Field(description="The version that training registers.")
    description: str | None = None
    base_model: NonEmptyText = Field(description="The base model the adapter extends.")
    rank: int = Field(default=16, ge=1, le=1024, description="LoRA rank r.")
    alpha: int = Field(default=32, ge=1, le=4096, description="LoRA alpha scaling.")
    dropout: float = Field(default=0.05, ge=0.0, lt=1.0)
    target_modules: list[Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.]+$")]] = Field(
        default_factory=lambda: ["q_proj", "v_proj"], min_length=1
    )
    training_data: DataLocation
    evaluation_data: DataLocation | None = None


# --------------------------------------------------------------------------- MCP servers


class ToolFilter(Strict):
    """Which of a server's tools the platform exposes at all."""

    include: list[ToolName] | None = Field(
        default=None, description="Only these tools; omit to expose all the server offers."
    )
    exclude: list[ToolName] = Field(default_factory=list)
    idempotent: list[ToolName] = Field(
        default_factory=list,
        description="Tools safe to call again for a repeated request (pure reads). Any other tool is "
        "called once per call id: a repeated request gets the first result back.",
    )

    @model_validator(mode="after")
    def _no_overlap(self) -> "ToolFilter":
        both = sorted(set(self.include or []) & set(self.exclude))
        if both:
            raise ValueError(f"tools both included and excluded: {', '.join(both)}")
        return self


class Timeouts(Strict):
    startup_seconds: float = Field(default=30.0, gt=0, le=600)
    call_seconds: float = Field(default=60.0, gt=0, le=3600)


class McpServerConfig(Document):
    """An MCP server the gateway starts (stdio) or connects to (streamable HTTP)."""

    kind: Literal["mcp_server"] = "mcp_server"
    id: Identifier
    description: str | None = None
    transport: Literal["stdio", "streamable_http"]
    command: NonEmptyText | None = Field(default=None, description="stdio: the program to run.")
    args: list[str] = Field(default_factory=list, description="stdio: its arguments.")
    cwd: str | None = Field(default=None, description="stdio: working directory (repo-relative).")
    env: dict[Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict,
        description="stdio: the only environment the server gets; values may be ${secret:…}.",
    )
    url: str | None = Field(default=None, description="streamable_http: the endpoint URL.")
    headers: dict[str, str] = Field(
        default_factory=dict, description="streamable_http: headers; values may be ${secret:…}."
    )
    tools: ToolFilter = Field(default_factory=ToolFilter)
    timeouts: Timeouts = Field(default_factory=Timeouts)
    enabled: bool = True

    @model_validator(mode="after")
    def _transport_fields(self) -> "McpServerConfig":
        if self.transport == "stdio":
            if self.command is None:
                raise ValueError("transport 'stdio' needs 'command'")
            stray = [name for name in ("url", "headers") if getattr(self, name)]
        else:
            if self.url is None:
                raise ValueError("transport 'streamable_http' needs 'url'")
            if not re.match(r"^(https?://|\$\{)", self.url):
                raise ValueError("'url' must start with http:// or https://")
            stray = [name for name in ("command", "args", "cwd", "env") if getattr(self, name)]
        if stray:
            raise ValueError(
                f"transport '{self.transport}' does not use {', '.join(repr(s) for s in stray)}"
            )
        return self


# --------------------------------------------------------------------------- shared checks

DOCUMENT_MODELS: dict[str, type[Document]] = {
    "agent": AgentConfig,
    "adapter": AdapterConfig,
    "mcp_server": McpServerConfig,
}


def document_id(document: Document) -> str:
    """The id that must be unique among documents of one kind."""
    return document.name if isinstance(document, AdapterConfig) else document.id  # type: ignore[attr-defined]
