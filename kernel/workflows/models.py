"""The ``workflow`` document: steps over agents and tools, as a DAG, with conditions and compensation.

A workflow run is one Durable orchestration (``kernel.workflows.orchestration``). Its steps:

* ``agent``: an event sent to an agent through the normal turn path, answered by the agent's reply;
* ``tool``: one MCP tool call (``server.tool``) through the gateway, as the workflow (its ``tools``
  grants apply, like an agent's);
* ``approval``: a person approves or declines before a deadline (a missed deadline declines);
* ``wait``: the run waits for a named external event, with a deadline.

``data``, ``arguments``, ``prompt``, ``outputs``, ``output`` and condition operands are templates
(``kernel.workflows.templates``): ``{{ input.quarter }}``, ``{{ steps.cfo.output.text }}``. Cross
references — agents, tools, steps, the DAG — are checked by ``kernel.workflows.validation`` when
configs load, with the same precise problems as agent configs.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from kernel import ncrontab
from kernel.config.models import (
    Document,
    EventPattern,
    Identifier,
    NonEmptyText,
    Reference,
    Strict,
    ToolGrant,
    _require_unique,
)

#: A step's kind is the one of these keys it carries.
STEP_KINDS = ("agent", "tool", "approval", "wait")
#: Default time limit of one attempt (agent, tool) or the deadline (approval, wait), in seconds.
DEFAULT_TIMEOUTS = {"agent": 600, "tool": 300, "approval": 86_400, "wait": 86_400}
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600
TOOL_REFERENCE = r"^[a-z][a-z0-9-]{0,62}\.[A-Za-z0-9_.-]{1,128}$"
CONCRETE_EVENT = r"^[A-Za-z0-9_.-]{1,200}$"


class Condition(Strict):
    """One operator over values; a string that is a whole template (``"{{ steps.a.status }}"``)
    stands for the value at that path (missing paths are *missing*: equal to nothing)."""

    equals: list[Any] | None = Field(default=None, min_length=2, max_length=2,
                                     description="[a, b]: true when a equals b.")
    not_equals: list[Any] | None = Field(default=None, min_length=2, max_length=2,
                                         description="[a, b]: true when a differs from b (or either is missing).")
    in_: list[Any] | None = Field(default=None, alias="in", min_length=2, max_length=2,
                                  description="[a, list]: true when a is an item of list.")
    greater_than: list[Any] | None = Field(default=None, min_length=2, max_length=2,
                                           description="[a, b]: numbers, true when a > b.")
    less_than: list[Any] | None = Field(default=None, min_length=2, max_length=2,
                                        description="[a, b]: numbers, true when a < b.")
    exists: str | None = Field(default=None, description="A path such as 'steps.cto.output.risk': true when "
                               "it holds a value other than null.")
    not_: Condition | None = Field(default=None, alias="not", description="True when the condition is false.")
    all: list[Condition] | None = Field(default=None, min_length=1, description="True when every condition is.")
    any: list[Condition] | None = Field(default=None, min_length=1, description="True when one condition is.")

    @model_validator(mode="after")
    def _one_operator(self) -> Condition:
        given = [name for name in OPERATORS if getattr(self, _attribute(name)) is not None]
        if len(given) != 1:
            raise ValueError(f"a condition has exactly one operator of {', '.join(OPERATORS)}"
                             + (f"; found {', '.join(given)}" if given else ""))
        return self


OPERATORS = ("equals", "not_equals", "in", "greater_than", "less_than", "exists", "not", "all", "any")


def _attribute(operator: str) -> str:
    return {"in": "in_", "not": "not_"}.get(operator, operator)


class Retry(Strict):
    """Attempts of an agent or tool step; each attempt has new ids (a new turn, a new tool call)."""

    max_attempts: int = Field(default=1, ge=1, le=20, description="Attempts in all, the first included.")
    backoff_seconds: float = Field(default=5.0, ge=0.0, le=3600.0, description="Wait before the second attempt.")
    backoff_coefficient: float = Field(default=2.0, ge=1.0, le=10.0, description="Each later wait is this much longer.")
    max_backoff_seconds: float = Field(default=3600.0, ge=0.0, le=86_400.0)


class Compensation(Strict):
    """What undoes a completed step when a later step fails or the run is cancelled: an agent event or a tool call."""

    agent: Reference | None = Field(default=None, description="The agent to send the event to: an id, or "
                                    "'namespace.id' for one of another namespace (which needs a route).")
    event: str | None = Field(default=None, pattern=CONCRETE_EVENT, description="The event type (with `agent`).")
    data: Any = Field(default=None, description="The event's data (a template).")
    tool: str | None = Field(default=None, pattern=TOOL_REFERENCE, description="'server.tool' to call.")
    arguments: dict[str, Any] | None = Field(default=None, description="The tool's arguments (a template).")
    timeout_seconds: int | None = Field(default=None, ge=1, le=MAX_TIMEOUT_SECONDS)
    retry: Retry = Field(default_factory=Retry, description="Attempts of the compensation, as a step's: each "
                         "attempt sends anew with its own id; the others still run when all fail.")

    @model_validator(mode="after")
    def _agent_or_tool(self) -> Compensation:
        _check_kind_fields(self, ("agent", "tool"), "a compensation")
        return self


class Approval(Strict):
    """A person decides; nobody deciding before the deadline declines (or fails the step)."""

    prompt: NonEmptyText = Field(description="What the approver is asked (a template).")
    on_timeout: Literal["decline", "fail"] = Field(
        default="decline", description="decline: the step completes with approved false; fail: the step fails.")


class Wait(Strict):
    """The run waits for an external event raised by name (``aos workflows event RUN NAME``)."""

    event: str = Field(pattern=CONCRETE_EVENT, description="The name the event is raised with.")
    on_timeout: Literal["fail", "continue"] = Field(
        default="fail", description="fail: the step fails; continue: it completes with timed_out true.")


class Step(Strict):
    """One step of the DAG: exactly one of ``agent``, ``tool``, ``approval``, ``wait``."""

    id: Identifier
    description: str | None = None
    needs: list[Identifier] = Field(default_factory=list, description="Steps that must finish first.")
    when: Condition | None = Field(default=None, description="Run only when this holds; otherwise skipped "
                                   "(and so are the steps that need it).")
    agent: Reference | None = Field(default=None, description="Agent step: the agent to address: an id, or "
                                    "'namespace.id' for one of another namespace (which needs a route).")
    event: str | None = Field(default=None, pattern=CONCRETE_EVENT, description="Agent step: the event type sent.")
    data: Any = Field(default=None, description="Agent step: the event's data (a template).")
    tool: str | None = Field(default=None, pattern=TOOL_REFERENCE,
                             description="Tool step: 'server.tool', granted under the workflow's tools.")
    arguments: dict[str, Any] | None = Field(default=None, description="Tool step: the arguments (a template).")
    approval: Approval | None = None
    wait: Wait | None = None
    timeout_seconds: int | None = Field(
        default=None, ge=1, le=MAX_TIMEOUT_SECONDS,
        description="One attempt's time limit (agent, tool) or the deadline (approval, wait); defaults: agent 600, "
        "tool 300, approval and wait 86400.")
    retry: Retry = Field(default_factory=Retry)
    compensate: Compensation | None = Field(default=None, description="Undoes this step if a later one fails.")
    outputs: dict[str, Any] | None = Field(
        default=None, description="Named values computed from the step's `result` (templates); when given they are "
        "the step's output instead of the result itself.")

    @model_validator(mode="after")
    def _one_kind(self) -> Step:
        _check_kind_fields(self, STEP_KINDS, "a step")
        if self.kind in ("approval", "wait") and self.retry.max_attempts > 1:
            raise ValueError(f"a {self.kind} step is not retried: remove retry")
        if self.kind in ("approval", "wait") and self.compensate is not None:
            raise ValueError(f"a {self.kind} step has nothing to undo: remove compensate")
        _require_unique("needs", self.needs)
        if self.id in self.needs:
            raise ValueError(f"step '{self.id}' needs itself")
        return self

    @property
    def kind(self) -> str:
        return next(kind for kind in STEP_KINDS if getattr(self, kind) is not None)

    @property
    def timeout(self) -> int:
        return self.timeout_seconds or DEFAULT_TIMEOUTS[self.kind]


class Trigger(Strict):
    """What starts a run besides the API: broadcast events of these types, and/or a schedule."""

    events: list[EventPattern] = Field(
        default_factory=list, description="Event types (with '*' wildcards) of broadcast events (no `to`) that start "
        "a run; the event's data is the run's input.")
    schedule: str | None = Field(default=None, description="Six-field NCRONTAB: {second} {minute} {hour} {day} "
                                 "{month} {dow}; each occurrence starts one run.")
    input: dict[str, Any] = Field(default_factory=dict, description="The input of scheduled runs.")

    @field_validator("schedule")
    @classmethod
    def _valid_cron(cls, value: str | None) -> str | None:
        if value is not None:
            ncrontab.validate(value)
        return value

    @model_validator(mode="after")
    def _something(self) -> Trigger:
        if not self.events and self.schedule is None:
            raise ValueError("a trigger names events, a schedule, or both")
        _require_unique("events", self.events)
        return self


class WorkflowConfig(Document):
    """A declarative multi-agent workflow, run durably step by step."""

    kind: Literal["workflow"] = "workflow"
    id: Identifier
    description: str | None = None
    inputs: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object"},
        description="JSON Schema (draft 2020-12) of a run's input, checked when a run starts.")
    trigger: Trigger | None = None
    tools: list[ToolGrant] = Field(default_factory=list, description="MCP tools the workflow's tool steps may call.")
    steps: list[Step] = Field(min_length=1)
    output: Any = Field(default=None, description="The run's output (a template over input and steps).")
    enabled: bool = Field(default=True, description="false: no run starts (the API refuses, triggers are ignored).")

    @model_validator(mode="after")
    def _unique(self) -> WorkflowConfig:
        _require_unique("steps", [step.id for step in self.steps])
        _require_unique("tools", [grant.server for grant in self.tools])
        _require_unique("wait events", [step.wait.event for step in self.steps if step.wait is not None])
        return self

    def step(self, step_id: str) -> Step | None:
        return next((step for step in self.steps if step.id == step_id), None)


def _check_kind_fields(model: Strict, kinds: tuple[str, ...], what: str) -> None:
    """Exactly one kind key, and no field that belongs to another kind."""
    given = [kind for kind in kinds if getattr(model, kind) is not None]
    if len(given) != 1:
        raise ValueError(f"{what} has exactly one of {', '.join(kinds)}" + (f"; found {', '.join(given)}" if given else ""))
    belongs = {"event": "agent", "data": "agent", "arguments": "tool"}
    for name, owner in belongs.items():
        if getattr(model, name, None) is not None and given[0] != owner:
            raise ValueError(f"'{name}' belongs to {owner} steps, not to a {given[0]} step")
    if given[0] == "agent" and model.event is None:
        raise ValueError("an agent step needs 'event': the event type the agent receives")
