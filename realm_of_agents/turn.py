"""The turn orchestration: one per event an agent receives, instance id derived from the event.

    begin, and read the agent's state (entity: its lock and queue; one batch) -> wait if queued:
      the grant that ends the wait carries the state as the entity handed the event over, so
      the granted turn starts on it (a grant without it: begin and read again)
    the agent's policy + purpose alignment (one activity; for an agent without MCP tools, also the
      first model call) -> quiet hours: wait on a timer until they end (alignment then apart), or
      refuse; declined events end here, with the reason
    MCP tools offered to the agent       -> a list_tools request to the MCP gateway (if it has grants)
    model call (activity) -> tool calls, each checkpointed and idempotent by turn id and index:
      context tools: an activity here; MCP tools: a request to the gateway over Service Bus (an
      activity sends it), the answer an external event raised by the kernel, a timer the timeout;
      a tool that needs approval first waits for a human's answer or its deadline
      ... until the model answers or the step budget is spent
    conclude (activity): archive the full turn (storage, searchable through the context MCP
      server), then publish its outputs on the outputs topic (the reply, events to other agents);
      a step that failed there is retried on its own activity (archive, publish)
    finish (entity)                      -> memory, goals, counters; hands over the next event
    grant (activity)                     -> tells the next queued turn to go, with the agent's state

The policy activity runs the steps after it that need no durable wait (``inline_steps``; for an
agent without MCP tools and a simple answer, the conclusion) with this same code, and the turn
takes their results from its answer instead of scheduling them: a simple turn is then one
activity and four episodes. ``AOS_TURN_INLINE_STEPS=off`` schedules each step.

Every step's failure is recorded on the turn, which then ends as ``failed``: the agent always
finishes the turn and takes its next event. A policy (``kernel.governance.policy``) that stops the
turn — a model call refused for its token budget or allow-lists, the policy's step limit, quiet
hours with ``refuse`` — ends it as ``refused``, recorded as a ``policy`` step and in ``refusals``;
a tool call a policy refuses comes back to the model as an error result and the turn goes on.
A crash resumes from the last checkpoint (Durable replay), so completed model and tool calls are
not repeated.

Orchestrator rules apply: deterministic code only (time from ``context.current_utc_datetime``,
ids from ``realm_of_agents.ids``), plain JSON in and out.
"""

from __future__ import annotations

import json
from collections import deque
from datetime import datetime, timedelta, timezone
from typing import Any, Generator

import azure.durable_functions as df

from kernel.governance import policy as policies
from kernel.governance.policy import EffectivePolicy, Refusal
from kernel.inference.port import split_tool_name
from kernel.toolbus import ToolRequest, error_result, list_call_id, tool_call_id
from realm_of_agents import approvals, ids, prompt, purpose
from realm_of_agents.entity import ENTITY_NAME
from realm_of_agents.memory import digest

ORCHESTRATOR = "agent_turn"
GRANT_EVENT = "turn_granted"
#: A queued turn re-asks the entity this often, in case a grant was lost.
RECHECK_INTERVAL = timedelta(minutes=5)
CONTEXT_SERVER = "context"
REPLY_TYPE = "agent.reply"
DECLINE_TYPE = "agent.declined"
FAILED_TYPE = "agent.failed"
MODEL_ATTEMPTS, MODEL_RETRY_MS = 2, 2000
MODEL_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=MODEL_RETRY_MS, max_number_of_attempts=MODEL_ATTEMPTS)
#: The model call's attempts after a first one made inside the policy activity failed.
MODEL_RETRY_REST = df.RetryOptions(first_retry_interval_in_milliseconds=MODEL_RETRY_MS,
                                   max_number_of_attempts=MODEL_ATTEMPTS - 1)
STORE_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=5)
#: A turn deferred by quiet hours reads its policy again this often (a changed policy applies).
POLICY_RECHECK = timedelta(minutes=5)
#: A granted turn that does not exist yet may be a moment from being started by the wake function.
GRANT_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=6)

# activity names
ASSESS, MODEL, TOOL, ARCHIVE, PUBLISH, GRANT, REPORT, CONFIG, SUMMARIZE = (
    "agent_assess", "agent_model", "agent_tool", "agent_archive", "agent_publish", "agent_grant", "agent_report",
    "agent_config", "agent_summarize")
TOOL_REQUEST, APPROVAL_REQUESTED, APPROVAL_DECIDED = (
    "agent_tool_request", "agent_approval_requested", "agent_approval_decided")
POLICY, POLICY_RECORD = "agent_policy", "agent_policy_record"
#: archive, then publish, in one activity (each retried on its own when it failed there)
CONCLUDE = "agent_conclude"
POLICY_REFUSED, POLICY_DEFERRED = "policy.refused", "policy.deferred"
#: What an agent without MCP tool grants is offered (no list_tools round trip to the gateway).
_NO_TOOLS: dict[str, Any] = {"tools": [], "unavailable": {}}


def turn_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    request = context.get_input()
    agent_id: str = request["agent_id"]
    event: dict[str, Any] = request["event"]
    turn_id = context.instance_id
    entity = df.EntityId(ENTITY_NAME, agent_id)
    ask = {"event_id": event["id"], "seq": request.get("seq")}

    decision, state = yield from _begin(context, entity, ask)
    while decision["decision"] == "queued":
        context.set_custom_status({"phase": "queued", "position": decision.get("position")})
        granted = context.wait_for_external_event(GRANT_EVENT)
        recheck = context.create_timer(context.current_utc_datetime + RECHECK_INTERVAL)
        winner = yield context.task_any([granted, recheck])
        if winner == granted:
            recheck.cancel()
            carried = _granted_state(granted.result, event["id"])
            if carried is not None:  # the entity made this event current: the turn starts now
                decision, state = {"decision": "start"}, carried
                break
        decision, state = yield from _begin(context, entity, ask)
    if decision["decision"] == "duplicate":
        return {"turn_id": turn_id, "agent_id": agent_id, "outcome": "duplicate"}
    if decision["decision"] == "refused":
        reason = f"agent '{agent_id}' refused the event: {decision.get('reason')}"
        yield context.call_activity_with_retry(REPORT, STORE_RETRY, {"kind": "refused", "reason": reason, "event": event})
        if event.get("reply_to"):  # a requester waiting for the reply (a workflow step) learns at once
            yield context.call_activity_with_retry(PUBLISH, STORE_RETRY, {"outputs": [
                _failed_reply(agent_id, turn_id, event, context.current_utc_datetime.isoformat(), "refused", reason)]})
        return {"turn_id": turn_id, "agent_id": agent_id, "outcome": "refused", "reason": decision.get("reason")}

    context.set_custom_status({"phase": "working"})
    if not state.get("config"):  # the event came before the config sync registered the agent
        declared = yield context.call_activity(CONFIG, {"agent_id": agent_id})
        if declared is not None:
            yield context.call_entity(entity, "configure", {**declared, "at": context.current_utc_datetime.isoformat()})
            state = yield context.call_entity(entity, "context", {"for": turn_id})
    turn = Turn(context, agent_id, turn_id, event, state)
    record = yield from turn.work()
    finished = yield context.call_entity(entity, "finish", {
        "event_id": event["id"], "turn": turn.entity_summary(), "at": turn.finished})
    yield from hand_over(context, agent_id, finished.get("next"))
    context.set_custom_status({"phase": "done", "outcome": record["outcome"]})
    return {key: record[key] for key in ("turn_id", "agent_id", "outcome", "reply", "error")} | {
        "event_type": event["type"], "tool_calls": turn.tool_calls, "provider": turn.provider}


def _begin(context: df.DurableOrchestrationContext, entity: df.EntityId,
           ask: dict[str, Any]) -> Generator[Any, Any, tuple[dict[str, Any], dict[str, Any]]]:
    """Ask the entity for the turn and read the agent's state, in one entity batch (``begin`` runs
    first; ``context`` only reads). The state is used only when the decision is ``start``; while the
    event is queued, ``context`` answers with its place only."""
    decision, state = yield context.task_all([
        context.call_entity(entity, "begin", ask),
        context.call_entity(entity, "context", {"for": context.instance_id, "event_id": ask["event_id"]})])
    return decision, state


def _granted_state(grant: Any, event_id: str) -> dict[str, Any] | None:
    """The agent's state a grant carries for this turn (``activities.grant``), else ``None``."""
    if not isinstance(grant, dict) or grant.get("event_id") != event_id:
        return None
    state = grant.get("state")
    return state if isinstance(state, dict) and state.get("current") == event_id else None


def hand_over(context: df.DurableOrchestrationContext, agent_id: str,
              next_event: str | None) -> Generator[Any, Any, None]:
    """Tell the turn of ``next_event`` (now the agent's current event) to go. A turn that cannot be
    reached — finished, or still not started after the grant's retries — is recorded in the
    dead-letter store and skipped, and the event after it is granted instead."""
    entity = df.EntityId(ENTITY_NAME, agent_id)
    while next_event:
        instance = ids.turn_instance_id(agent_id, next_event)
        try:
            delivered = yield context.call_activity_with_retry(GRANT, GRANT_RETRY, {
                "instance_id": instance, "agent_id": agent_id, "event_id": next_event})
        except Exception:
            delivered = False
        if delivered:
            return
        yield context.call_activity_with_retry(REPORT, STORE_RETRY, {
            "kind": "lost-turn", "reason": f"turn {instance} for event '{next_event}' could not be reached; skipped",
            "event": {"id": next_event, "to": agent_id}})
        skipped = yield context.call_entity(entity, "skip", {"event_id": next_event})
        next_event = skipped.get("next")


class Turn:
    """The work of one started turn; a generator method per phase, state kept on the object.

    The orchestration runs it, and so does the policy activity (``inline_steps``), which goes on
    after the policy read with the steps that need no durable wait and returns their results:
    the orchestration then takes those (``_inline``) instead of scheduling the same calls, and
    reads the clock they ran at (``now``). Every activity call and clock read goes through
    ``_activity`` and ``now`` for that reason."""

    def __init__(self, context: Any, agent_id: str, turn_id: str, event: dict[str, Any], state: dict[str, Any],
                 *, started: str | None = None, inline_ready: bool = True) -> None:
        self.context = context
        self.agent_id = agent_id
        self.turn_id = turn_id
        self.event = event
        self.state = state
        self.config: dict[str, Any] = state.get("config") or {}
        self.started = started or context.current_utc_datetime.isoformat()
        #: the first policy read hands the turn to the policy activity (which may run steps inline)
        self.inline_ready = inline_ready
        self._inline: deque[tuple[str, Any]] = deque()
        self._inline_at: datetime | None = None
        self.finished = self.started
        self.alignment: dict[str, Any] | None = None
        self.outcome = "replied"
        self.reply: str | None = None
        self.error: str | None = None
        self.rationale = ""
        self.steps: list[dict[str, Any]] = []
        self.tool_calls = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.provider: str | None = None
        self.facts: list[str] = []
        self.goal_updates: dict[str, dict[str, Any]] = {}
        self.sent_events: list[dict[str, Any]] = []
        self.summary_lines: dict[str, str] = {}
        self.policy = EffectivePolicy(agent_id)
        self.refusals: list[dict[str, Any]] = []
        self.first_model: dict[str, Any] | None = None
        self.first_completion: dict[str, Any] | None = None
        self.first_failed = False

    def work(self) -> Generator[Any, Any, dict[str, Any]]:
        """The turn from its policy read to its conclusion (archived, outputs published); the record."""
        try:
            yield from self.run()
        except Exception as error:  # a step failed in a way the steps did not handle: record it, never wedge
            self.fail(f"turn failed: {_reason(error)}")
        yield from self.summarize_leaving_turn()
        record = self.record()
        yield from self._conclude(record)
        return record

    def now(self) -> datetime:
        """The orchestration's clock; while results of steps run inline are still to be taken, the
        time those steps ran at, so this code computes what the policy activity computed."""
        return self._inline_at if self._inline and self._inline_at is not None else self.context.current_utc_datetime

    def _activity(self, name: str, payload: Any, retry: df.RetryOptions | None = None) -> Generator[Any, Any, Any]:
        """Call an activity; or take its result, when the policy activity already ran it inline
        (the same calls come in the same order: a different name means the code changed between
        the two runs; that call then fails with the reason, as a failed activity would, and the
        turn schedules its calls from there)."""
        if self._inline:
            ran, result = self._inline.popleft()
            if ran == name:
                return result
            self._inline.clear()
            raise RuntimeError(f"the policy activity ran '{ran}' inline where the turn now calls '{name}'")
        task = self.context.call_activity(name, payload) if retry is None else \
            self.context.call_activity_with_retry(name, retry, payload)
        return (yield task)

    def run(self) -> Generator[Any, Any, None]:
        if not self.config:
            self.fail("the agent has no config yet (it was never registered)")
            return
        assess = {"agent_id": self.agent_id, "turn_id": self.turn_id, "config": self.config, "event": self.event}
        if not self.config.get("tools"):  # the first prompt is known now: the policy activity may call the model
            self.first_model = self._model_request(0, prompt.initial_messages(self.state, self.event), _NO_TOOLS)
        if not (yield from self._read_policy(begin=True, assess=assess)) or not (yield from self._quiet_hours()):
            return
        if self.alignment is None:  # not assessed with the policy (it has quiet hours)
            self.alignment = yield from self._activity(ASSESS, assess)
        if self.alignment.get("refused"):  # the purpose check's model call was refused (and audited)
            self._refuse(self.alignment["refused"])
            return
        if not self.alignment["aligned"]:
            self.outcome = "declined"
            self.rationale = self.alignment["reason"]
            self.reply = f"Declined: {self.alignment['reason']}."
            self._stamp()
            return
        yield from self._converse()
        self._touch_goals()
        self._stamp()

    # policy -------------------------------------------------------------------------------------
    def _read_policy(self, begin: bool = False, assess: dict[str, Any] | None = None) -> Generator[Any, Any, bool]:
        """The agent's effective policy, read through an activity (so replay sees the same one); the
        first read (``begin``) also counts the turn against its namespace's turns-per-minute quota
        and, given ``assess`` (the ASSESS request), runs the purpose check when the policy has no
        quiet hours: the alignment, if any, is kept in ``self.alignment``."""
        ask: dict[str, Any] = {"agent_id": self.agent_id}
        if begin:
            ask.update({"turn_id": self.turn_id, "begin": True})
        if assess is not None and self.inline_ready:  # the activity derives the rest by running this code
            ask["turn"] = {"event": self.event, "state": self.state, "started": self.started}
        elif assess is not None:
            ask["assess"] = assess
            if self.first_model is not None:
                ask["first_model"] = self.first_model
        try:
            found = yield from self._activity(POLICY, ask, STORE_RETRY)
        except Exception as error:
            self.fail(f"the agent's policy could not be read: {_reason(error)}")
            return False
        inline = found.pop("inline", None)
        if inline and inline.get("steps"):
            self._inline.extend((name, result) for name, result in inline["steps"])
            self._inline_at = datetime.fromisoformat(inline["at"])
        self.alignment = found.pop("alignment", None)
        self.first_completion = found.pop("first_model", None)
        self.first_failed = bool(found.pop("first_model_failed", None))
        refused = found.pop("quota_refused", None)
        self.policy = EffectivePolicy.from_dict(found)
        if refused is not None:  # audited by the activity
            self._refuse(refused)
            return False
        return True

    def _quiet_hours(self) -> Generator[Any, Any, bool]:
        """Whether the turn may start: in quiet hours it waits on a durable timer until they end
        (``defer``, reading the policy again every POLICY_RECHECK), or ends refused (``refuse``)."""
        deferred: dict[str, Any] | None = None
        while True:
            now = _utc(self.now())
            quiet = policies.quiet_state(self.policy, now)
            if not quiet.quiet:
                break
            refusal = quiet.refusal(now)
            if quiet.action == "refuse":
                yield from self._audit(refusal)
                self._refuse(refusal.to_dict())
                return False
            if deferred is None:
                deferred = {"kind": "policy", **refusal.to_dict(), "at": now.isoformat()}
                self.steps.append(deferred)
                yield from self._audit(refusal, kind=POLICY_DEFERRED)
            deferred["until"] = refusal.details["until"]
            self.context.set_custom_status({"phase": "quiet-hours", "until": deferred["until"],
                                            "policies": list(quiet.policies)})
            wake = min(quiet.until or now, now + POLICY_RECHECK)
            yield self.context.create_timer(_like(wake, self.now()))
            if not (yield from self._read_policy()):
                return False
        if deferred is not None:
            deferred["resumed"] = now.isoformat()
            self.context.set_custom_status({"phase": "working"})
        return True

    def _audit(self, refusal: Refusal, *, kind: str = POLICY_REFUSED) -> Generator[Any, Any, None]:
        """Audit a refusal the turn itself made (an audit outage is logged by the activity, never fatal)."""
        try:
            yield from self._activity(POLICY_RECORD, {
                "agent_id": self.agent_id, "turn_id": self.turn_id, "kind": kind, "refusal": refusal.to_dict()},
                STORE_RETRY)
        except Exception:
            pass

    def _refuse(self, refusal: dict[str, Any]) -> None:
        """End the turn because a policy stopped it (audited by whoever refused)."""
        self.refusals.append(refusal)
        self.steps.append({"kind": "policy", **refusal})
        self.outcome = "refused"
        by = "quota" if str(refusal.get("rule", "")).startswith("quota.") else "policy"
        self.error = f"refused by {by}: {refusal['reason']}"
        self.rationale = self.error
        self._stamp()

    # conversation ---------------------------------------------------------------------------------
    def _converse(self) -> Generator[Any, Any, None]:
        model = self.config.get("model") or {}
        messages = prompt.initial_messages(self.state, self.event)
        tools = yield from self._list_tools()
        self.offered = [(tool["server"], tool["name"]) for tool in tools["tools"]]
        max_steps, binding = policies.turn_limit(int(model.get("max_steps", 6)), self.policy.max_steps_per_turn)
        for step in range(max_steps):
            try:
                if step == 0 and self.first_completion is not None:  # made by the policy activity
                    completion = self.first_completion
                elif step == 0 and self.first_failed:  # that was the first attempt: the retry's wait, then the rest
                    yield self.context.create_timer(self.now() + timedelta(milliseconds=MODEL_RETRY_MS))
                    completion = yield from self._activity(MODEL, self._model_request(step, messages, tools),
                                                           MODEL_RETRY_REST)
                else:
                    completion = yield from self._activity(MODEL, self._model_request(step, messages, tools),
                                                           MODEL_RETRY)
            except Exception as error:
                self.steps.append({"kind": "model", "step": step, "error": _reason(error)})
                self.fail(f"model call failed: {_reason(error)}")
                return
            if completion.get("refused"):  # not called; the activity audited it
                self._refuse({**completion["refused"], "step": step})
                return
            self.provider = completion["provider"]
            self.tokens_in += completion["usage"]["prompt_tokens"]
            self.tokens_out += completion["usage"]["completion_tokens"]
            self.steps.append({"kind": "model", "step": step, "provider": completion["provider"],
                               "model": completion["model"], "content": completion["content"],
                               "tool_calls": completion["tool_calls"], "usage": completion["usage"],
                               "offered_tools": completion.get("offered_tools"),
                               "unavailable_servers": completion.get("unavailable_servers"),
                               **{key: completion[key] for key in ("endpoint", "adapter", "fallback", "cached",
                                                                   "attempts", "note") if completion.get(key)}})
            if not completion["tool_calls"]:
                self.reply = completion["content"]
                self.rationale = f"{self.alignment['reason']} ({self.alignment['method']} alignment); answered by {completion['provider']}"
                return
            messages.append({"role": "assistant", "content": completion["content"], "tool_calls": completion["tool_calls"]})
            for call in completion["tool_calls"]:
                result = yield from self._call_tool(call)
                messages.append({"role": "tool", "content": _tool_text(result), "tool_call_id": call["id"]})
        if binding is not None:
            refusal = policies.turn_limit_refusal("max_steps_per_turn", binding, max_steps, "model calls")
            yield from self._audit(refusal)
            self._refuse({**refusal.to_dict(), "reason": f"{refusal.reason}; they were spent before the model "
                                                          "answered"})
            return
        self.fail(f"the step budget of {model.get('max_steps', 6)} model calls was spent before the model answered")

    def _model_request(self, step: int, messages: list[dict[str, Any]], tools: dict[str, Any]) -> dict[str, Any]:
        """The ``MODEL`` activity's request for ``step`` (the first one may go with the policy read)."""
        return {"agent_id": self.agent_id, "turn_id": self.turn_id, "step": step,
                "model": self.config.get("model") or {}, "messages": messages, "tools": tools,
                "traceparent": self.event.get("traceparent")}

    def _list_tools(self) -> Generator[Any, Any, dict[str, Any]]:
        """The MCP tools the gateway offers this agent now (one round trip; none without grants)."""
        if not self.config.get("tools"):
            return dict(_NO_TOOLS)
        listing = yield from self._ask_gateway(ToolRequest(
            op="list_tools", agent_id=self.agent_id, instance_id=self.turn_id,
            call_id=list_call_id(self.turn_id, 0)))
        if "tools" not in listing:  # the gateway did not answer in time, or answered an error
            reason = listing.get("error") or _tool_text(listing)
            self.steps.append({"kind": "tools", "error": reason})
            return {"tools": [], "unavailable": {g["server"]: reason for g in self.config["tools"]}}
        return {"tools": listing["tools"], "unavailable": listing.get("unavailable") or {}}

    def _call_tool(self, call: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        index = self.tool_calls
        server, tool = _tool_of(call["name"], getattr(self, "offered", []))
        step: dict[str, Any] = {"kind": "tool", "index": index, "server": server, "tool": tool,
                                "arguments": call["arguments"], "call_id": call["id"]}
        limit, binding = policies.turn_limit(int((self.config.get("model") or {}).get("max_tool_calls", 16)),
                                             self.policy.max_tool_calls_per_turn)
        if index >= limit and binding is not None:
            refusal = policies.turn_limit_refusal("max_tool_calls_per_turn", binding, index, "tool calls")
            refusal = Refusal(refusal.rule, refusal.policies, refusal.reason, refusal.limit, refusal.observed,
                              {"server": server, "tool": tool})
            yield from self._audit(refusal)
            result = policies.refused_result(refusal)
        elif index >= limit:
            result = _error_result(f"the tool-call budget of {limit} calls for this turn is spent")
        elif server == CONTEXT_SERVER:
            self.tool_calls += 1
            try:
                result = yield from self._activity(TOOL, {
                    "agent_id": self.agent_id, "turn_id": self.turn_id, "index": index, "server": server,
                    "tool": tool, "arguments": call["arguments"], "state": self.state,
                    "traceparent": self.event.get("traceparent")})
            except Exception as error:
                result = _error_result(f"tool call failed: {_reason(error)}")
        else:
            self.tool_calls += 1
            result = yield from self._call_mcp_tool(index, server, tool, call["arguments"], step)
        step["result"] = result
        self.steps.append(step)
        if result.get("error") == "PolicyRefused" and isinstance(result.get("policy"), dict):
            self.refusals.append({**result["policy"], "tool_index": index})
        if server == CONTEXT_SERVER and not result.get("is_error"):
            self._collect_context_effect(tool, call["arguments"])
        return result

    def _call_mcp_tool(self, index: int, server: str, tool: str, arguments: dict[str, Any],
                       step: dict[str, Any]) -> Generator[Any, Any, dict[str, Any]]:
        """Through the gateway, after a human's approval when the agent's config asks for one."""
        needed = approvals.requirement(self.config, server, tool)
        if needed is not None:
            decision = yield from self._await_approval(index, server, tool, arguments, needed)
            step["approval"] = decision
            if not decision["approved"]:
                return error_result(f"not run: the call was declined by {decision['by']}"
                                    + (f" ({decision['reason']})" if decision.get("reason") else ""),
                                    error="ApprovalDeclined")
        return (yield from self._ask_gateway(ToolRequest(
            op="call_tool", agent_id=self.agent_id, instance_id=self.turn_id,
            call_id=tool_call_id(self.turn_id, index), server=server, tool=tool,
            arguments=arguments if isinstance(arguments, dict) else {})))

    def _ask_gateway(self, request: ToolRequest) -> Generator[Any, Any, dict[str, Any]]:
        """Send the request (activity), then wait for the answer (external event) or the timeout (timer)."""
        try:
            sent = yield from self._activity(TOOL_REQUEST, {
                "request": request.model_dump(mode="json", exclude_none=True),
                "traceparent": self.event.get("traceparent")}, STORE_RETRY)
        except Exception as error:
            return error_result(f"the request could not be sent to the MCP gateway: {_reason(error)}",
                                error="GatewayUnreachable")
        answer = self.context.wait_for_external_event(request.call_id)
        deadline = self.context.create_timer(self.now() + timedelta(seconds=sent["wait_seconds"]))
        winner = yield self.context.task_any([answer, deadline])
        if winner == answer:
            deadline.cancel()
            return answer.result if isinstance(answer.result, dict) else json.loads(answer.result)
        return error_result(f"the MCP gateway did not answer within {sent['wait_seconds']} s", error="GatewayTimeout")

    def _await_approval(self, index: int, server: str, tool: str, arguments: dict[str, Any],
                        needed: approvals.Requirement) -> Generator[Any, Any, dict[str, Any]]:
        approval = approvals.approval_id(self.turn_id, index)
        deadline_at = self.now() + timedelta(seconds=needed.timeout_seconds)
        yield from self._activity(APPROVAL_REQUESTED, {
            "approval_id": approval, "agent_id": self.agent_id, "turn_id": self.turn_id, "server": server,
            "tool": tool, "arguments": arguments, "deadline": deadline_at.isoformat(),
            "event_type": self.event["type"]}, STORE_RETRY)
        self.context.set_custom_status({"phase": "awaiting-approval", "approval_id": approval,
                                        "tool": f"{server}.{tool}", "deadline": deadline_at.isoformat()})
        answered = self.context.wait_for_external_event(approvals.event_name(approval))
        deadline = self.context.create_timer(deadline_at)
        winner = yield self.context.task_any([answered, deadline])
        if winner == answered:
            deadline.cancel()
            given = answered.result if isinstance(answered.result, dict) else json.loads(answered.result)
            decision = {"approved": bool(given.get("approved")), "by": str(given.get("by") or "unknown"),
                        "reason": given.get("reason")}
        else:
            decision = {"approved": False, "by": "deadline",
                        "reason": f"no decision within {needed.timeout_seconds} s"}
        decision["id"] = approval
        decision["at"] = self.now().isoformat()
        yield from self._activity(APPROVAL_DECIDED, {
            "approval_id": approval, "agent_id": self.agent_id, "server": server, "tool": tool,
            "decision": decision}, STORE_RETRY)
        self.context.set_custom_status({"phase": "working"})
        return decision

    def _collect_context_effect(self, tool: str, arguments: dict[str, Any]) -> None:
        """Context tools that change the agent apply when the turn finishes, through the entity."""
        if tool == "remember_fact" and arguments.get("fact"):
            self.facts.append(str(arguments["fact"]))
        elif tool == "update_goal" and arguments.get("goal_id"):
            change = {k: arguments[k] for k in ("action", "progress", "note") if arguments.get(k) is not None}
            change["turn_id"] = self.turn_id
            self.goal_updates[str(arguments["goal_id"])] = change
        elif tool == "send_event" and arguments.get("to") and arguments.get("type"):
            self.sent_events.append({"to": arguments["to"], "type": arguments["type"], "data": arguments.get("data")})

    def _touch_goals(self) -> None:
        """Active goals the event's matched words belong to record that this turn worked on them."""
        matched = set((self.alignment or {}).get("matched_terms") or [])
        if not matched:
            return
        for goal in self.state.get("goals", []):
            if goal.get("status") == "active" and goal["id"] not in self.goal_updates \
                    and matched & purpose.standing_terms(goal["description"]):
                self.goal_updates[goal["id"]] = {"action": "touch", "turn_id": self.turn_id}

    def summarize_leaving_turn(self) -> Generator[Any, Any, None]:
        """With a model configured, it writes the summary line of the turn this one pushes out of
        the window (the extractive line stays the fallback, so a failure here costs nothing)."""
        memory = self.state.get("memory") or {}
        window = memory.get("window") or []
        budget = (self.config.get("memory") or {}).get("window_turns", 12)
        if not self.provider or self.provider == "offline" or len(window) < budget:
            return
        leaving = window[0]
        try:
            line = yield from self._activity(SUMMARIZE, {
                "agent_id": self.agent_id, "turn_id": self.turn_id, "model": self.config.get("model") or {},
                "turn": leaving,
                "summary": (memory.get("summary") or [])[-5:]})
        except Exception:
            return
        if line:
            self.summary_lines[leaving["turn_id"]] = line

    def fail(self, reason: str) -> None:
        self.outcome = "failed"
        self.error = reason
        self.rationale = reason
        self._stamp()

    def _stamp(self) -> None:
        self.finished = self.now().isoformat()

    def _conclude(self, record: dict[str, Any]) -> Generator[Any, Any, None]:
        """Archive the turn, then publish its outputs (``record["outputs"]``): one activity (``CONCLUDE``)
        when both succeed at once. A step that failed there is retried on its own, as the turn always
        did: the archive with ``STORE_RETRY``, then the publish, which goes out after the archive
        succeeded or after its last attempt failed. Failures end up in ``record["error"]``."""
        try:
            done = yield from self._activity(CONCLUDE, record)
        except Exception:  # the activity itself failed: run both steps apart
            done = {"archived": False, "published": None}
        if not done.get("archived"):
            try:
                yield from self._activity(ARCHIVE, record, STORE_RETRY)
            except Exception as error:
                record["error"] = (record.get("error") or "") + f" archive failed: {_reason(error)}"
        if record["outputs"] and done.get("published") is None:
            try:
                yield from self._activity(PUBLISH, {"outputs": record["outputs"]}, STORE_RETRY)
            except Exception as error:
                record["error"] = (record.get("error") or "") + f" publish failed: {_reason(error)}"

    # results -------------------------------------------------------------------------------------
    def record(self) -> dict[str, Any]:
        return {
            "agent_id": self.agent_id, "turn_id": self.turn_id, "config_version": self.state.get("config_version"),
            "event": self.event, "started": self.started, "finished": self.finished, "outcome": self.outcome,
            "alignment": self.alignment, "steps": self.steps, "reply": self.reply, "error": self.error,
            "decision": {"action": self.outcome, "rationale": self.rationale}, "outputs": self.outputs(),
            "provider": self.provider, "tool_calls": self.tool_calls,
            "usage": {"prompt_tokens": self.tokens_in, "completion_tokens": self.tokens_out},
            "policies": list(self.policy.policies), "refusals": self.refusals,
            "facts": self.facts, "goal_updates": self.goal_updates,
        }

    def outputs(self) -> list[dict[str, Any]]:
        """The reply (to the event's source) and the events the turn sends to other agents."""
        event = self.event
        common = {"source": self.agent_id, "time": self.finished, "causation_id": event["id"],
                  "correlation_id": event.get("correlation_id") or event["id"]}
        if event.get("traceparent"):
            common["traceparent"] = event["traceparent"]
        outputs = []
        if self.outcome in ("replied", "declined") and self.reply is not None:
            outputs.append({**common, "id": ids.output_id(self.turn_id, "reply"),
                            "type": REPLY_TYPE if self.outcome == "replied" else DECLINE_TYPE,
                            "to": event["source"], "subject": event["type"],
                            "data": {"turn_id": self.turn_id, "text": self.reply, "outcome": self.outcome}})
        elif self.outcome in ("failed", "refused") and event.get("reply_to"):
            # a requester waiting for the reply (a workflow step) learns at once that none will come
            outputs.append(_failed_reply(self.agent_id, self.turn_id, event, self.finished, self.outcome, self.error))
        for n, sent in enumerate(self.sent_events):
            outputs.append({**common, "id": ids.output_id(self.turn_id, n), "type": sent["type"], "to": sent["to"],
                            "data": sent["data"]})
        return outputs

    def entity_summary(self) -> dict[str, Any]:
        text = self.reply or self.error or ""
        return {
            "digest": digest(self.turn_id, self.finished, self.event["type"], self.outcome, text),
            "facts": self.facts, "tool_calls": self.tool_calls, "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out, "goal_updates": self.goal_updates, "summary_lines": self.summary_lines,
        }


def _failed_reply(agent_id: str, turn_id: str, event: dict[str, Any], time: str | None, outcome: str,
                  error: str | None) -> dict[str, Any]:
    """``agent.failed`` to the event's source: the turn failed or was refused, no reply will come."""
    return {"source": agent_id, "time": time, "causation_id": event["id"],
            "correlation_id": event.get("correlation_id") or event["id"],
            **({"traceparent": event["traceparent"]} if event.get("traceparent") else {}),
            "id": ids.output_id(turn_id, "reply"), "type": FAILED_TYPE, "to": event["source"], "subject": event["type"],
            "data": {"turn_id": turn_id, "outcome": outcome, "error": error}}


def _tool_of(name: str, offered: list[tuple[str, str]]) -> tuple[str, str]:
    """The (server, tool) a model's call names (``kernel.inference.port.tool_name``); a name that
    is neither gives (name, "") and the call comes back to the model as an error."""
    try:
        return split_tool_name(name, offered)
    except ValueError:
        return name, ""


def _utc(moment: datetime) -> datetime:
    """The orchestration's clock as an aware UTC datetime (history timestamps may come naive)."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _like(moment: datetime, clock: datetime) -> datetime:
    """``moment`` (aware UTC) in the form of the orchestration's clock, for ``create_timer``."""
    return moment.replace(tzinfo=None) if clock.tzinfo is None else moment


def _error_result(message: str) -> dict[str, Any]:
    return error_result(message, error="ToolCallFailed")


def _tool_text(result: dict[str, Any]) -> str:
    parts = [item.get("text") or json.dumps(item) for item in result.get("content", [])]
    text = "\n".join(parts) if parts else json.dumps(result.get("structured_content"))
    return ("ERROR: " if result.get("is_error") else "") + text


def _reason(error: BaseException) -> str:
    """The useful first line of an activity failure (the SDK appends details after it)."""
    text = str(error).strip()
    return text.split("\n")[0].strip()[:1000] or type(error).__name__
