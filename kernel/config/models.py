"""Pydantic models of every config document: the single source of truth.

The JSON Schemas in ``schemas/`` are exported from these models (``aos schema``), and a test fails
when the committed schemas drift. Models are strict: unknown keys are errors, so a typo never
silently turns a setting off.

Document kinds:

* ``agent`` (files in ``agent_configs/``; ``kind`` may be omitted there),
* ``adapter`` (a LoRA adapter; its own document in ``agent_configs/`` with ``kind: adapter``),
* ``inference_endpoint`` (a model endpoint agents call; ``agent_configs/endpoints/`` with
  ``kind: inference_endpoint``),
* ``mcp_server`` (files in ``mcp_configs/``; ``kind`` may be omitted there),
* ``policy`` (an operator's limits for the agents it selects; ``agent_configs/policies/`` with
  ``kind: policy``),
* ``namespace`` (a tenant namespace: quotas, cross-namespace routes, who may use it;
  ``agent_configs/namespaces/`` with ``kind: namespace``). Every document has a ``namespace``
  field (``default`` when omitted); see ``kernel.namespaces`` for addresses and references.
"""

from __future__ import annotations

import fnmatch
import re
import zoneinfo
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator, model_validator

from kernel import namespaces, ncrontab

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
SELECTOR_PATTERN = r"^[a-z0-9*?][a-z0-9*?-]{0,62}$"
SELECTOR_RULE = "an agent id, or a pattern of one with '*' (any run of characters) and '?' (one character)"
CLOCK_PATTERN = r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"
CLOCK_RULE = "a time of day 'HH:MM' on the 24-hour clock (00:00 to 23:59; '24:00' as an end means midnight)"
ADAPTER_ENTRY_PATTERN = r"^[a-z][a-z0-9-]{0,62}(?:@[0-9A-Za-z][0-9A-Za-z._-]{0,63})?$"
ADAPTER_ENTRY_RULE = "an adapter name, or 'name@version' for one version of it"
REFERENCE_PATTERN = r"^(?:[a-z][a-z0-9-]{0,62}\.)?[a-z][a-z0-9-]{0,62}$"
REFERENCE_RULE = "an id, or 'namespace.id' for one of another namespace (which needs a route)"
TOOL_SELECTOR_PATTERN = r"^[a-z0-9*?][a-z0-9*?-]{0,62}(?:\.[A-Za-z0-9_.*?-]{1,128})?$"
TOOL_SELECTOR_RULE = "an MCP server id or 'server.tool', with '*' and '?' wildcards, such as 'github' or 'github.search_*'"

Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
ToolName = Annotated[str, StringConstraints(pattern=TOOL_PATTERN)]
EventPattern = Annotated[str, StringConstraints(pattern=EVENT_PATTERN)]
TopicName = Annotated[str, StringConstraints(pattern=TOPIC_PATTERN)]
Version = Annotated[str, StringConstraints(pattern=VERSION_PATTERN)]
AgentSelector = Annotated[str, StringConstraints(pattern=SELECTOR_PATTERN)]
ClockTime = Annotated[str, StringConstraints(pattern=CLOCK_PATTERN)]
AdapterEntry = Annotated[str, StringConstraints(pattern=ADAPTER_ENTRY_PATTERN)]
Reference = Annotated[str, StringConstraints(pattern=REFERENCE_PATTERN)]
ToolSelector = Annotated[str, StringConstraints(pattern=TOOL_SELECTOR_PATTERN)]
NonEmptyText = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]

#: Human wording for pattern errors, keyed by the regex pydantic reports.
PATTERN_RULES = {
    ID_PATTERN: ID_RULE,
    TOOL_PATTERN: TOOL_RULE,
    EVENT_PATTERN: EVENT_RULE,
    TOPIC_PATTERN: TOPIC_RULE,
    VERSION_PATTERN: VERSION_RULE,
    SELECTOR_PATTERN: SELECTOR_RULE,
    CLOCK_PATTERN: CLOCK_RULE,
    ADAPTER_ENTRY_PATTERN: ADAPTER_ENTRY_RULE,
    REFERENCE_PATTERN: REFERENCE_RULE,
    TOOL_SELECTOR_PATTERN: TOOL_SELECTOR_RULE,
}

DEFAULT_EVENTS_TOPIC = "agent-events"
DEFAULT_NAMESPACE = "default"


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
    namespace: Identifier = Field(
        default=DEFAULT_NAMESPACE,
        description="The tenant namespace the document belongs to (a `namespace` document declares it); ids are "
        "unique per kind and namespace, and references resolve within it.",
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
        description="Inference endpoint id (an `inference_endpoint` document); none means the default endpoint "
        "of the app settings (AOS_INFERENCE_ENDPOINT), which is the offline provider when that is empty.",
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

    server: Reference = Field(
        description="The MCP server id (an `mcp_server` document of the agent's namespace), or 'namespace.id' for "
        "one of another namespace that a route of the agent's namespace grants."
    )
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

    server: Reference = Field(description="A granted MCP server, written as in `tools`.")
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


class AgentRouting(BaseModel):
    """What the bus topology and the routing index read of an agent: ``enabled`` and
    ``subscriptions``, as :class:`AgentConfig` validates them. Read from an agent's stored JSON
    (already validated as a whole), it builds two small models instead of the whole document: a
    pass over ten thousand agents makes a fraction of the garbage, which the allocator would
    otherwise keep (docs/performance.md, round 9)."""

    model_config = ConfigDict(extra="ignore")

    # the defaults are AgentConfig's own, so the two cannot disagree about an agent that omits them
    subscriptions: list[Subscription] = Field(default_factory=AgentConfig.model_fields["subscriptions"].default_factory)
    enabled: bool = AgentConfig.model_fields["enabled"].default


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


class AdapterTraining(Strict):
    """How `aos adapters train` trains the adapter, locally or as an Azure ML command job."""

    learning_rate: float = Field(default=2e-4, gt=0.0, le=1.0)
    epochs: float = Field(default=3.0, gt=0.0, le=100.0)
    max_steps: int | None = Field(default=None, ge=1, description="Stop after this many steps (overrides epochs).")
    batch_size: int = Field(default=4, ge=1, le=1024)
    gradient_accumulation_steps: int = Field(default=1, ge=1, le=1024)
    max_length: int = Field(default=2048, ge=16, le=131072, description="Tokens per example, at most.")
    eval_fraction: float = Field(
        default=0.1, ge=0.0, lt=1.0, description="Share of training data held out when there is no evaluation_data."
    )
    seed: int = Field(default=42, ge=0)
    compute: Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9-]{1,31}$")] | None = Field(
        default=None, description="Azure ML compute cluster; default AOS_AML_COMPUTE, else serverless compute."
    )
    instance_type: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_]{1,64}$")] = Field(
        default="Standard_NC24ads_A100_v4", description="VM size when the job runs on serverless compute."
    )


#: Text rules every export applies unless its `redaction.builtin` list says otherwise.
BUILTIN_REDACTIONS = ("email", "phone", "iban", "card", "secret")


class RedactionPattern(Strict):
    """A custom text rule: every match of `pattern` (a Python regular expression) is replaced."""

    name: Identifier
    pattern: NonEmptyText
    replacement: str | None = Field(default=None, description="Default: '[<name>]'.")

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"not a valid regular expression: {error}") from None
        return value


class ExportRedaction(Strict):
    """What is removed from archived turns before they become training data."""

    builtin: list[Literal["email", "phone", "iban", "card", "secret"]] = Field(
        default_factory=lambda: list(BUILTIN_REDACTIONS),
        description="Built-in text rules: e-mail addresses, phone numbers, IBANs, card numbers (Luhn-checked), "
        "secret-looking assignments and bearer tokens.",
    )
    keys: list[NonEmptyText] = Field(
        default_factory=list,
        description="More key patterns (regular expressions) whose values are redacted in event data and tool "
        "arguments, besides password, secret, token, api key and the other defaults.",
    )
    patterns: list[RedactionPattern] = Field(default_factory=list)


class AdapterExport(Strict):
    """How `aos adapters export-data` turns agents' archived turns into training data."""

    agents: list[Identifier] | None = Field(
        default=None, description="Agents whose turns are exported; default: every agent that uses the adapter."
    )
    include_tool_calls: bool = Field(default=True, description="Keep tool calls and results in the conversations.")
    redaction: ExportRedaction = Field(default_factory=ExportRedaction)


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
    training: AdapterTraining = Field(default_factory=AdapterTraining)
    export: AdapterExport = Field(default_factory=AdapterExport)


# --------------------------------------------------------------------------- inference endpoints

#: Entra ID token scopes of the Azure endpoint types (others name theirs in ``auth.scope``).
DEFAULT_ENTRA_SCOPES = {
    "azure_openai": "https://cognitiveservices.azure.com/.default",
    "foundry": "https://cognitiveservices.azure.com/.default",
    "azureml": "https://ml.azure.com/.default",
}
_GUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
_HEADER_NAME = r"^[A-Za-z0-9-]{1,100}$"


class EndpointAuth(Strict):
    """How AOS proves who it is to the endpoint. Keys are references, resolved at each call."""

    type: Literal["none", "key", "entra"] = Field(
        default="none",
        description="none: no credentials sent; key: an API key; entra: a Microsoft Entra ID token "
        "(managed identity in Azure, your az login locally) from DefaultAzureCredential.",
    )
    key: str | None = Field(
        default=None, description="type key: exactly one reference, ${secret:NAME} or ${env:NAME}; never the key itself."
    )
    header: Literal["authorization", "api-key"] = Field(
        default="authorization",
        description="type key: send 'Authorization: Bearer <key>' (OpenAI, vLLM, Azure ML, the Azure OpenAI v1 API) "
        "or 'api-key: <key>' (Azure's own header).",
    )
    scope: str | None = Field(
        default=None,
        pattern=r"^https://[^\s${}]+$",
        description="type entra: the token scope. Defaults: https://cognitiveservices.azure.com/.default "
        "(azure_openai, foundry), https://ml.azure.com/.default (azureml).",
    )
    client_id: str | None = Field(
        default=None,
        pattern=_GUID,
        description="type entra: client id of a user-assigned managed identity (default: DefaultAzureCredential's "
        "choice, AZURE_CLIENT_ID).",
    )

    @model_validator(mode="after")
    def _fields_of_the_type(self) -> "EndpointAuth":
        from kernel.config.references import MalformedReference, find_references

        if self.type == "key":
            if self.key is None:
                raise ValueError("auth type 'key' needs 'key': a reference such as ${secret:my-endpoint-key}")
            try:
                references = find_references(self.key)
            except MalformedReference:
                references = []
            if len(references) != 1 or str(references[0]) != self.key.strip():
                raise ValueError(
                    "'key' must be exactly one reference, ${secret:NAME} or ${env:NAME}: keys are never written "
                    "into configs (store it in Key Vault, or locally in an environment variable)"
                )
        stray = [name for name in ("key", "header") if name in self.model_fields_set and self.type != "key"]
        stray += [name for name in ("scope", "client_id") if getattr(self, name) is not None and self.type != "entra"]
        if stray:
            raise ValueError(f"auth type '{self.type}' does not use {', '.join(repr(s) for s in stray)}")
        return self


class AdapterServing(Strict):
    """Which LoRA adapters the endpoint serves; the adapter's name is the `model` a request sends."""

    served: list[Identifier] = Field(
        default_factory=list,
        description="Adapters served under their own names (vLLM --lora-modules NAME=PATH; an Azure deployment "
        "named after the adapter).",
    )
    discover: bool = Field(
        default=False,
        description="Also ask the endpoint what it serves (GET <url>/models), remembered for discover_ttl_seconds.",
    )
    discover_ttl_seconds: int = Field(default=300, ge=5, le=86400)
    on_demand: bool = Field(
        default=False,
        description="The server loads any adapter it is asked for (LoRAX): always send the adapter's name; only a "
        "'model not found' answer falls back.",
    )
    fallback: bool = Field(
        default=True,
        description="When the agent's adapter is not served, answer with base_model and record that on the call; "
        "false fails the call instead.",
    )

    @field_validator("served")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        _require_unique("served", value)
        return value


class EndpointRetries(Strict):
    """Retries inside one model call (the turn's activity retry comes on top of these)."""

    max_attempts: int = Field(
        default=3, ge=1, le=10,
        description="Attempts per call on HTTP 429, 408 and 5xx, timeouts and refused connections, the first included.",
    )
    backoff_seconds: float = Field(default=0.5, ge=0, le=60, description="First back-off; doubles per attempt, with jitter.")
    max_backoff_seconds: float = Field(default=8.0, ge=0, le=300)
    max_retry_after_seconds: float = Field(
        default=30.0, ge=0, le=600,
        description="A Retry-After (or retry-after-ms) up to this long is waited for; a longer one ends the call "
        "as unavailable at once.",
    )


class CircuitBreakerSettings(Strict):
    """After this many failed calls in a row the endpoint is not called for a while: calls fail at once."""

    failure_threshold: int = Field(default=5, ge=1, le=1000)
    cooldown_seconds: float = Field(
        default=30.0, gt=0, le=3600, description="How long calls fail fast before one trial call is let through."
    )


class ResponseCacheSettings(Strict):
    """Answers kept in table storage, keyed by the full request, and served again within ttl_seconds."""

    enabled: bool = True
    ttl_seconds: int = Field(default=3600, ge=1, le=30 * 86400)
    sampled: bool = Field(
        default=False,
        description="Also cache requests with temperature above 0. Off by default: a sampled answer is meant to vary.",
    )


class InferenceEndpointConfig(Document):
    """A model endpoint that speaks the OpenAI chat-completions wire format; agents name it in `model.endpoint`."""

    kind: Literal["inference_endpoint"]
    id: Identifier
    description: str | None = None
    type: Literal["azure_openai", "foundry", "azureml", "vllm", "lorax", "ollama", "openai_compatible"] = Field(
        description="What serves it; decides defaults such as the Entra ID scope and the structured-output format."
    )
    url: str = Field(
        description="The OpenAI base URL, e.g. https://<resource>.openai.azure.com/openai/v1/ or "
        "http://localhost:8000/v1; may be a ${secret:…} or ${env:…} reference."
    )
    base_model: NonEmptyText = Field(
        description="The model sent without an adapter (and on fallback): the model name on vLLM, LoRAX and Ollama, "
        "the deployment name on Azure OpenAI and Foundry."
    )
    api_version: Annotated[str, StringConstraints(pattern=r"^[0-9A-Za-z.-]{1,40}$")] | None = Field(
        default=None, description="Sent as ?api-version= for Azure APIs that need one (the v1 API does not)."
    )
    headers: dict[Annotated[str, StringConstraints(pattern=_HEADER_NAME)], str] = Field(
        default_factory=dict,
        description="Extra headers that are not secret, e.g. azureml-model-deployment; credentials go in 'auth'.",
    )
    auth: EndpointAuth = Field(default_factory=EndpointAuth)
    adapters: AdapterServing = Field(default_factory=AdapterServing)
    timeout_seconds: float = Field(default=60.0, gt=0, le=600, description="Per attempt, the whole answer included.")
    retries: EndpointRetries = Field(default_factory=EndpointRetries)
    circuit_breaker: CircuitBreakerSettings = Field(default_factory=CircuitBreakerSettings)
    cache: ResponseCacheSettings = Field(default_factory=ResponseCacheSettings)
    concurrency: int = Field(
        default=8, ge=1, le=1024,
        description="Requests in flight to this endpoint at once from one Function instance; more wait for a slot.",
    )
    structured_output: bool = Field(
        default=False,
        description="The endpoint honours response_format with a JSON Schema (Azure OpenAI, vLLM, Ollama, LoRAX); "
        "the purpose check then asks for schema-shaped JSON.",
    )
    enabled: bool = Field(
        default=True,
        description="false: agents naming this endpoint are answered by the offline provider, labelled as such.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip()
        if not re.match(r"^(https?://\S+|\$\{[^}]+\}\S*)$", value):
            raise ValueError("'url' must start with http:// or https:// (or be a ${env:…} / ${secret:…} reference)")
        return value

    @field_validator("headers")
    @classmethod
    def _no_credentials_in_headers(cls, value: dict[str, str]) -> dict[str, str]:
        reserved = sorted(name for name in value if name.lower() in ("authorization", "api-key"))
        if reserved:
            raise ValueError(f"{', '.join(reserved)} carries credentials: declare them in 'auth'")
        return value

    @model_validator(mode="after")
    def _entra_scope(self) -> "InferenceEndpointConfig":
        if self.auth.type == "entra" and self.auth.scope is None and self.type not in DEFAULT_ENTRA_SCOPES:
            raise ValueError(f"auth type 'entra' on a '{self.type}' endpoint needs 'auth.scope' (the token scope)")
        return self


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


# --------------------------------------------------------------------------- policies

Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
#: What ``models.endpoints`` calls the offline provider, and the app settings' endpoint (AOS_INFERENCE_ENDPOINT).
OFFLINE_ENDPOINT = "offline"
SETTINGS_ENDPOINT = "default"


class ToolCallLimits(Strict):
    """Tool calls an agent may make, counted over all its turns in fixed UTC windows."""

    per_minute: int | None = Field(default=None, ge=1, le=100_000, description="Calls per UTC clock minute.")
    per_hour: int | None = Field(default=None, ge=1, le=10_000_000, description="Calls per UTC clock hour.")

    @model_validator(mode="after")
    def _some_limit(self) -> "ToolCallLimits":
        if self.per_minute is None and self.per_hour is None:
            raise ValueError("'tool_calls' needs 'per_minute', 'per_hour' or both: omit it for no rate limit")
        return self


class ModelAllowList(Strict):
    """Endpoints and adapters the agents may call; a list that is absent allows anything."""

    endpoints: list[Identifier] | None = Field(
        default=None,
        description="Inference endpoint ids the agents' model calls may go to; 'offline' is the offline provider, "
        "'default' the app settings' endpoint (AOS_INFERENCE_ENDPOINT). Checked against where the call would go: "
        "an agent naming a disabled endpoint is answered offline.",
    )
    adapters: list[AdapterEntry] | None = Field(
        default=None,
        description="LoRA adapters the agents may speak through: a name (any version) or 'name@version' (only an "
        "agent pinned to that version; one floating on 'latest' matches a bare name or 'name@latest'). Calls "
        "without an adapter are governed by 'endpoints' alone.",
    )

    @model_validator(mode="after")
    def _some_list(self) -> "ModelAllowList":
        if self.endpoints is None and self.adapters is None:
            raise ValueError("'models' needs 'endpoints', 'adapters' or both: omit it to allow any model")
        return self


class QuietWindow(Strict):
    """Hours, in the policy's time zone, when the agents do not start work."""

    start: ClockTime = Field(description="Local time the window opens, 'HH:MM'.")
    end: ClockTime = Field(
        description="Local time it closes, 'HH:MM' ('24:00': midnight); an end before the start wraps past "
        "midnight into the next day."
    )
    days: list[Weekday] = Field(
        default_factory=lambda: list(WEEKDAYS),
        min_length=1,
        description="Days the window opens on (a window wrapping midnight ends on the next day).",
    )

    @model_validator(mode="after")
    def _has_length(self) -> "QuietWindow":
        if self.start == "24:00":
            raise ValueError("a window cannot start at '24:00': use '00:00'")
        if self.start == self.end:
            raise ValueError(f"the window opens and closes at {self.start}: for a whole day use '00:00' to '24:00'")
        _require_unique("days", list(self.days))
        return self


class QuietHours(Strict):
    """When the agents stay quiet, and what happens to an event that arrives then."""

    timezone: str = Field(default="UTC", description="IANA time zone of the windows, e.g. 'Europe/Berlin'.")
    windows: list[QuietWindow] = Field(min_length=1)
    action: Literal["defer", "refuse"] = Field(
        default="defer",
        description="defer: the turn waits (durably) until the quiet hours end, then runs; refuse: the turn ends "
        "at once with the reason. The event is kept either way: in the turn record and the archive.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown IANA time zone '{value}': expected a name such as 'UTC', 'Europe/Berlin' or "
                "'America/New_York' (a system without a time zone database needs the tzdata package)"
            ) from None
        return value


class PolicyConfig(Document):
    """An operator's limits for the agents it selects; agents cannot loosen them.

    Several policies may select one agent: the most restrictive wins (the smallest limit, the
    intersection of allow-lists, every quiet window, refuse over defer)."""

    kind: Literal["policy"]
    id: Identifier
    description: str | None = None
    applies_to: list[AgentSelector] = Field(
        min_length=1, description="Agent ids or patterns ('*' any run of characters, '?' one); ['*'] is every agent."
    )
    tokens_per_day: int | None = Field(
        default=None, ge=1,
        description="Prompt plus completion tokens per agent per UTC day (as counted in table 'usage'); a model "
        "call is refused once the day's count has reached it.",
    )
    tool_calls: ToolCallLimits | None = Field(default=None, description="Rate limits of the agents' tool calls.")
    models: ModelAllowList | None = Field(default=None, description="Allow-lists of endpoints and adapters.")
    max_steps_per_turn: int | None = Field(
        default=None, ge=1, le=50, description="Model calls per turn at most (the agent's model.max_steps applies "
        "too: the smaller wins)."
    )
    max_tool_calls_per_turn: int | None = Field(
        default=None, ge=0, le=200, description="Tool calls per turn at most (with the agent's model.max_tool_calls: "
        "the smaller wins)."
    )
    quiet_hours: QuietHours | None = None
    enabled: bool = Field(default=True, description="false: the policy applies to no agent.")

    @field_validator("applies_to")
    @classmethod
    def _unique_selectors(cls, value: list[str]) -> list[str]:
        _require_unique("applies_to", value)
        return value

    def selects(self, agent_id: str) -> bool:
        """Whether this policy applies to the agent at address ``agent_id``: one of the policy's own
        namespace whose id a pattern matches (a disabled policy applies to no agent)."""
        namespace, bare = namespaces.split(agent_id)
        return self.enabled and namespace == self.namespace and any(
            fnmatch.fnmatchcase(bare, pattern) for pattern in self.applies_to)

    @model_validator(mode="after")
    def _limits_something(self) -> "PolicyConfig":
        limits = ("tokens_per_day", "tool_calls", "models", "max_steps_per_turn", "max_tool_calls_per_turn",
                  "quiet_hours")
        if all(getattr(self, name) is None for name in limits):
            raise ValueError(f"a policy sets at least one of {', '.join(limits)}")
        return self


# --------------------------------------------------------------------------- namespaces


class NamespaceQuotas(Strict):
    """What the namespace's agents may use together; each limit is optional."""

    agents: int | None = Field(
        default=None, ge=0, le=1_000_000,
        description="Agents the namespace may run; the config sync refuses agents beyond it (those registered "
        "first keep their place).",
    )
    turns_per_minute: int | None = Field(
        default=None, ge=1, le=1_000_000,
        description="Turns the namespace's agents may begin per UTC clock minute, together; a turn beyond it ends "
        "as refused.",
    )
    tokens_per_day: int | None = Field(
        default=None, ge=1,
        description="Prompt plus completion tokens of the namespace's agents per UTC day, together; a model call "
        "is refused once the day's count has reached it.",
    )


class NamespaceRoute(Strict):
    """An explicit grant: this namespace's agents may reach these of namespace `to`."""

    to: Identifier = Field(description="The namespace reached.")
    agents: list[AgentSelector] = Field(
        default_factory=list,
        description="Its agents this namespace's agents may send events to (and whose subscriptions receive this "
        "namespace's broadcast events); ids or patterns.",
    )
    tools: list[ToolSelector] = Field(
        default_factory=list,
        description="Its MCP servers and tools this namespace's agents may be granted: 'server' or 'server.*' for a "
        "whole server, 'server.tool' for one tool; patterns allowed.",
    )
    workflows: list[AgentSelector] = Field(
        default_factory=list, description="Its workflows this namespace's agents may start; ids or patterns."
    )

    @model_validator(mode="after")
    def _grants_something(self) -> "NamespaceRoute":
        if not (self.agents or self.tools or self.workflows):
            raise ValueError(f"the route to '{self.to}' grants nothing: list agents, tools or workflows")
        return self


class NamespaceAccess(Strict):
    """Who may use the namespace over the HTTP API with Entra ID tokens (function keys reach every namespace)."""

    roles: list[NonEmptyText] = Field(
        default_factory=list,
        description="App role values (the token's 'roles' claim) that give access, e.g. 'AOS.Namespace.Acme'.",
    )
    groups: list[NonEmptyText] = Field(
        default_factory=list, description="Entra ID group object ids (the token's 'groups' claim) that give access."
    )


class NamespaceConfig(Document):
    """A tenant namespace: its quotas, its routes into other namespaces, and who may use it.

    The default namespace exists without a document; declaring one named `default` gives it
    quotas and access rules too."""

    kind: Literal["namespace"]
    id: Identifier = Field(description="The namespace's name, which documents put in their `namespace` field.")
    description: str | None = None
    quotas: NamespaceQuotas = Field(default_factory=NamespaceQuotas)
    routes: list[NamespaceRoute] = Field(default_factory=list)
    access: NamespaceAccess = Field(default_factory=NamespaceAccess)

    @model_validator(mode="after")
    def _own_rules(self) -> "NamespaceConfig":
        if self.namespace != DEFAULT_NAMESPACE:
            raise ValueError("a namespace document belongs to the platform: leave 'namespace' out (it is "
                             f"'{DEFAULT_NAMESPACE}')")
        for route in self.routes:
            if route.to == self.id:
                raise ValueError(f"a route to '{self.id}' itself: a namespace always reaches its own documents")
        _require_unique("routes", [route.to for route in self.routes])
        return self


# --------------------------------------------------------------------------- shared checks

# The workflow kind lives in its own package and builds on the classes above (kernel/workflows/__init__.py).
from kernel.workflows.models import WorkflowConfig  # noqa: E402

DOCUMENT_MODELS: dict[str, type[Document]] = {
    "agent": AgentConfig,
    "adapter": AdapterConfig,
    "mcp_server": McpServerConfig,
    "inference_endpoint": InferenceEndpointConfig,
    "policy": PolicyConfig,
    "namespace": NamespaceConfig,
    "workflow": WorkflowConfig,
}

#: Kinds shared by every namespace: a document of these kinds stays in the default namespace.
SHARED_KINDS = ("adapter", "inference_endpoint")


def document_id(document: Document) -> str:
    """The id that must be unique among documents of one kind."""
    return document.name if isinstance(document, AdapterConfig) else document.id  # type: ignore[attr-defined]
