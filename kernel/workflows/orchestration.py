"""One workflow run as one Durable orchestration: ready steps scheduled as the DAG allows.

    index the run (activity)
    loop: start every ready step (needs finished; skipped when a need was skipped or `when` is false)
          wait for whichever in-flight task finishes first (task_any), or the `cancel` event:
            agent step   send the event (activity) -> the agent's reply (external event named by the
                         attempt's correlation id) or the attempt's deadline (durable timer)
            tool step    send the MCP request (activity) -> the gateway's answer (external event) or the deadline
            approval     a person's answer (external event) or the deadline (on_timeout: decline or fail)
            wait         the named external event or the deadline
          a failed attempt waits its back-off (durable timer) and tries again with new ids
    a step failed for good, or the run was cancelled: no new steps; approvals and waits stop at once,
          running agent and tool attempts finish; then the `compensate` of every completed step runs,
          in reverse completion order; the run ends `failed` (or `cancelled`) with `compensated: [...]`
    otherwise the run ends `completed` with its `output` rendered

Everything here is deterministic: time from ``context.current_utc_datetime``, ids from
``kernel.workflows.ids``, no I/O. The workflow document is part of the run's input, so a config
changed mid-run does not change the run. Progress is the custom status (values clipped); the
orchestration's output is the full run view.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import UTC, datetime, timedelta
from typing import Any

import azure.durable_functions as df
from azure.durable_functions.models.Task import TaskState

from kernel import namespaces as ns
from kernel.toolbus import ToolRequest
from kernel.topology import AGENT_OUTPUTS
from kernel.workflows import conditions, graph, ids, reach, templates
from kernel.workflows.models import DEFAULT_TIMEOUTS, STEP_KINDS

ORCHESTRATOR = "workflow_run"
SEND_AGENT, SEND_TOOL, INDEX = "workflow_send_agent", "workflow_send_tool", "workflow_index"
INDEX_RETRY = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=5)
REPLY_TYPE = "agent.reply"
#: Longest JSON of one value in the custom status (Azure Storage keeps custom status small); the
#: orchestration's output, when the run ends, has every value in full.
STATUS_VALUE_CHARS = 2000
FINISHED = ("completed", "failed", "cancelled")


def run_orchestrator(context: df.DurableOrchestrationContext) -> Generator[Any, Any, dict[str, Any]]:
    run = _Run(context, context.get_input())
    yield from run.execute()
    return run.view()


class _Flight:
    """A step's current attempt: which phase it is in and the tasks it waits for (task -> role)."""

    def __init__(self, phase: str, attempt: int) -> None:
        self.phase = phase
        self.attempt = attempt
        self.tasks: list[tuple[Any, str]] = []
        self.timer: Any = None

    def wait(self, task: Any, role: str) -> None:
        self.tasks.append((task, role))

    def role_of(self, task: Any) -> str | None:
        return next((role for candidate, role in self.tasks if candidate is task), None)

    def cancel_timer(self) -> None:
        if self.timer is not None and not self.timer.is_completed:
            self.timer.cancel()


class _Run:
    def __init__(self, context: df.DurableOrchestrationContext, request: dict[str, Any]) -> None:
        self.context = context
        self.request = request
        self.id = context.instance_id
        self.doc: dict[str, Any] = request["workflow"]
        self.address: str = request["address"]
        self.specs = {step["id"]: step for step in self.doc["steps"]}
        self.needs = {step["id"]: list(step.get("needs") or []) for step in self.doc["steps"]}
        self.order = graph.order(self.needs)
        self.input = request.get("input") or {}
        self.started = self.now()
        self.finished: str | None = None
        self.status = "running"
        self.error: str | None = None
        self.output: Any = None
        self.cancelled: dict[str, Any] | None = None
        self.failed_step: str | None = None
        self.compensated: list[str] = []
        self.completion: list[str] = []
        self.stopping = False
        self.flights: dict[str, _Flight] = {}
        self.steps = {step_id: {"id": step_id, "kind": _kind(self.specs[step_id]), "needs": self.needs[step_id],
                                "status": "pending", "attempts": 0, "started": None, "finished": None,
                                "input": None, "output": None, "error": None, "history": [],
                                **({"event": self.specs[step_id]["wait"]["event"]}
                                   if _kind(self.specs[step_id]) == "wait" else {})}
                      for step_id in self.order}

    # -- the run ---------------------------------------------------------------------------------
    def execute(self) -> Generator[Any, Any, None]:
        yield from self.index()
        self.publish()
        cancel = self.context.wait_for_external_event(ids.CANCEL_EVENT)
        while True:
            if not self.stopping:
                self.start_ready()
            if not self.flights:
                break
            tasks = [task for flight in self.flights.values() for task, _ in flight.tasks]
            if self.cancelled is None:
                tasks.append(cancel)
            self.publish()
            winner = yield self.context.task_any(tasks)
            if winner is cancel:
                given = winner.result if isinstance(winner.result, dict) else {}
                self.cancelled = {"by": str(given.get("by") or "unknown"), "reason": given.get("reason"),
                                  "at": self.now()}
                self.stop("the run was cancelled")
                continue
            step_id, role = next((step_id, flight.role_of(winner)) for step_id, flight in self.flights.items()
                                 if flight.role_of(winner) is not None)
            self.advance(step_id, role or "", winner)
        for step in self.steps.values():
            if step["status"] == "pending":
                step["status"] = "cancelled" if self.cancelled else "not_run"
        if self.cancelled is not None or self.failed_step is not None:
            self.status = "compensating"
            self.publish()
            for step_id in reversed(self.completion):
                if self.specs[step_id].get("compensate"):
                    yield from self.compensate(step_id)
            self.status = "cancelled" if self.cancelled is not None else "failed"
            if self.failed_step is not None and self.error is None:
                self.error = f"step '{self.failed_step}' failed: {self.steps[self.failed_step]['error']}"
        else:
            self.status = "completed"
            self.output = templates.render(self.doc.get("output"), self.scope(), lenient=True)
        self.finished = self.now()
        self.publish()
        yield from self.index()

    def start_ready(self) -> None:
        for step_id in self.order:
            step = self.steps[step_id]
            if self.stopping or step["status"] != "pending":
                continue
            statuses = [self.steps[need]["status"] for need in self.needs[step_id]]
            if any(status not in ("completed", "skipped") for status in statuses):
                continue
            skipped = [need for need in self.needs[step_id] if self.steps[need]["status"] == "skipped"]
            spec = self.specs[step_id]
            if skipped:
                self.skip(step_id, f"it needs '{skipped[0]}', which was skipped")
            elif spec.get("when") and not conditions.holds(spec["when"], self.scope()):
                self.skip(step_id, "its condition is false")
            else:
                step["status"] = "running"
                step["started"] = self.now()
                self.attempt(step_id, 1)

    def skip(self, step_id: str, reason: str) -> None:
        step = self.steps[step_id]
        step.update(status="skipped", error=None, started=self.now(), finished=self.now(), reason=reason)

    # -- attempts --------------------------------------------------------------------------------
    def attempt(self, step_id: str, number: int) -> None:
        spec, step = self.specs[step_id], self.steps[step_id]
        kind = step["kind"]
        step["attempts"] = number
        step["history"].append({"attempt": number, "started": self.now()})
        try:
            rendered = self.render_input(spec, kind)
        except templates.TemplateError as error:
            self.fail(step_id, f"its input could not be rendered: {error}", final=True)
            return
        step["input"] = rendered
        flight = _Flight("send", number)
        correlation = ids.attempt_id(self.id, step_id, number)
        if kind == "agent":
            flight.wait(self.context.call_activity(SEND_AGENT, self.agent_send(
                correlation, spec["agent"], spec["event"], rendered, step_id)), "sent")
        elif kind == "tool":
            flight.wait(self.context.call_activity(SEND_TOOL, self.tool_request(correlation, spec["tool"], rendered)),
                        "sent")
        else:
            flight.phase = "await"
            deadline = self.context.current_utc_datetime + timedelta(seconds=_timeout(spec, kind))
            step["waiting"] = {"until": _iso(deadline), **({"prompt": rendered} if kind == "approval" else
                                                             {"event": spec["wait"]["event"]})}
            name = ids.approval_event(step_id) if kind == "approval" else ids.wait_event(spec["wait"]["event"])
            flight.wait(self.context.wait_for_external_event(name), "answer")
            flight.timer = self.context.create_timer(deadline)
            flight.wait(flight.timer, "deadline")
        self.flights[step_id] = flight

    def render_input(self, spec: dict[str, Any], kind: str) -> Any:
        scope = self.scope()
        if kind == "agent":
            return templates.render(spec.get("data") if spec.get("data") is not None else {}, scope)
        if kind == "tool":
            return templates.render(spec.get("arguments") or {}, scope)
        if kind == "approval":
            return templates.render(spec["approval"]["prompt"], scope)
        return {"event": spec["wait"]["event"]}

    def advance(self, step_id: str, role: str, task: Any) -> None:
        flight, spec, kind = self.flights[step_id], self.specs[step_id], self.steps[step_id]["kind"]
        if role == "backoff":
            del self.flights[step_id]
            self.attempt(step_id, flight.attempt + 1)
            return
        if role == "sent":
            if task.state is TaskState.FAILED:
                self.fail(step_id, f"the {'event' if kind == 'agent' else 'request'} could not be sent: "
                          f"{_reason(task.result)}")
                return
            if isinstance(task.result, dict) and task.result.get("refused"):  # no route to the agent now
                self.fail(step_id, f"not sent: {task.result['refused']}", final=True)
                return
            flight.phase = "await"
            flight.tasks = []
            correlation = ids.attempt_id(self.id, step_id, flight.attempt)
            flight.wait(self.context.wait_for_external_event(correlation), "answer")
            flight.timer = self.context.create_timer(
                self.context.current_utc_datetime + timedelta(seconds=_timeout(spec, kind)))
            flight.wait(flight.timer, "deadline")
            return
        if role == "deadline":
            self.timed_out(step_id, spec, kind)
            return
        flight.cancel_timer()
        answer = _json(task.result)
        if kind == "agent":
            data = answer.get("data") if isinstance(answer.get("data"), dict) else {}
            if answer.get("type") == REPLY_TYPE:
                self.complete(step_id, {"text": data.get("text"), "agent": answer.get("source"),
                                        "turn_id": data.get("turn_id"), "outcome": data.get("outcome")})
            else:
                self.fail(step_id, f"agent '{spec['agent']}' {data.get('outcome') or 'did not reply'}: "
                          f"{data.get('error') or data.get('text') or answer.get('type')}")
        elif kind == "tool":
            text = "\n".join(str(item.get("text", "")) for item in answer.get("content") or [] if isinstance(item, dict))
            if answer.get("is_error"):
                self.fail(step_id, f"{spec['tool']} failed ({answer.get('error') or 'tool error'}): {text[:500]}")
            else:
                self.complete(step_id, {"text": text, "structured": answer.get("structured_content"),
                                        "content": answer.get("content")})
        elif kind == "approval":
            self.complete(step_id, {"approved": bool(answer.get("approved")), "by": str(answer.get("by") or "unknown"),
                                    "reason": answer.get("reason"), "at": self.now()})
        else:
            self.complete(step_id, {"data": task.result, "timed_out": False, "at": self.now()})

    def timed_out(self, step_id: str, spec: dict[str, Any], kind: str) -> None:
        seconds = _timeout(spec, kind)
        if kind == "approval" and spec["approval"].get("on_timeout", "decline") == "decline":
            self.complete(step_id, {"approved": False, "by": "deadline", "reason": f"no decision within {seconds} s",
                                    "at": self.now()})
        elif kind == "wait" and spec["wait"].get("on_timeout") == "continue":
            self.complete(step_id, {"data": None, "timed_out": True, "at": self.now()})
        elif kind in ("approval", "wait"):
            self.fail(step_id, f"no {'decision' if kind == 'approval' else 'event'} within {seconds} s", final=True)
        else:
            self.fail(step_id, f"no {'reply' if kind == 'agent' else 'answer'} within {seconds} s")

    def complete(self, step_id: str, result: dict[str, Any]) -> None:
        self.flights.pop(step_id, None)
        spec, step = self.specs[step_id], self.steps[step_id]
        step.pop("waiting", None)
        output: Any = result
        if spec.get("outputs"):
            try:
                output = templates.render(spec["outputs"], {**self.scope(), "result": result})
            except templates.TemplateError as error:
                step["result"] = result
                self.fail(step_id, f"its outputs could not be rendered: {error}", final=True)
                return
        step["history"][-1].update(finished=self.now(), outcome="completed")
        step.update(status="completed", finished=self.now(), output=output, error=None)
        self.completion.append(step_id)

    def fail(self, step_id: str, reason: str, *, final: bool = False) -> None:
        """An attempt failed: retry after its back-off while attempts are left, else the step fails."""
        self.flights.pop(step_id, None)
        spec, step = self.specs[step_id], self.steps[step_id]
        step.pop("waiting", None)
        if step["history"]:
            step["history"][-1].update(finished=self.now(), outcome="failed", error=reason)
        retry = spec.get("retry") or {}
        attempts = int(retry.get("max_attempts", 1))
        if not final and not self.stopping and step["attempts"] < attempts:
            delay = _backoff(retry, step["attempts"])
            flight = _Flight("backoff", step["attempts"])
            flight.timer = self.context.create_timer(self.context.current_utc_datetime + timedelta(seconds=delay))
            flight.wait(flight.timer, "backoff")
            self.flights[step_id] = flight
            step.update(status="retrying", error=reason)
            return
        step.update(status="failed", finished=self.now(), error=reason)
        if self.failed_step is None and self.cancelled is None:
            self.failed_step = step_id
        self.stop(f"step '{step_id}' failed")

    def stop(self, why: str) -> None:
        """No new steps; approvals, waits and back-offs end now; running agent and tool attempts finish."""
        self.stopping = True
        for step_id, flight in list(self.flights.items()):
            if flight.phase == "backoff" or self.steps[step_id]["kind"] in ("approval", "wait"):
                flight.cancel_timer()
                del self.flights[step_id]
                step = self.steps[step_id]
                step.pop("waiting", None)
                step.update(status="cancelled", finished=self.now(), error=why)

    # -- compensation ----------------------------------------------------------------------------
    def compensate(self, step_id: str) -> Generator[Any, Any, None]:
        """Undo a completed step, attempt after attempt as its ``retry`` allows (one by default); each
        attempt sends anew with its own id, and the record keeps every attempt's outcome."""
        spec = self.specs[step_id]["compensate"]
        step = self.steps[step_id]
        retry = spec.get("retry") or {}
        attempts = int(retry.get("max_attempts", 1))
        record: dict[str, Any] = {"started": self.now(), "attempts": 0, "history": []}
        step["compensation"] = record
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                yield self.context.create_timer(self.context.current_utc_datetime + timedelta(seconds=_backoff(retry, attempt - 1)))
            record["attempts"] = attempt
            outcome = yield from self._compensate_once(step_id, spec, record, attempt)
            record["history"].append({key: outcome.get(key) for key in ("id", "started", "finished", "status", "error")})
            record.pop("output", None)  # an earlier attempt's answer is not this one's
            record.update({key: value for key, value in outcome.items() if key not in ("id", "started", "final")})
            if outcome["status"] == "completed":
                step["status"] = "compensated"
                self.compensated.append(step_id)
                return
            if outcome.get("final"):  # its input cannot be rendered: another attempt renders the same
                return

    def _compensate_once(self, step_id: str, spec: dict[str, Any], record: dict[str, Any],
                         attempt: int) -> Generator[Any, Any, dict[str, Any]]:
        """One attempt of a compensation: its outcome (``status``, ``error``, ``output``, times)."""
        correlation = ids.compensation_id(self.id, step_id, attempt)
        outcome: dict[str, Any] = {"id": correlation, "started": self.now()}
        kind = "agent" if spec.get("agent") else "tool"
        seconds = int(spec.get("timeout_seconds") or DEFAULT_TIMEOUTS[kind])
        try:
            if kind == "agent":
                payload = templates.render(spec.get("data") if spec.get("data") is not None else {}, self.scope())
                record["input"] = payload
                sent = yield self.context.call_activity(SEND_AGENT, self.agent_send(
                    correlation, spec["agent"], spec["event"], payload, f"{step_id} (compensation)"))
                if isinstance(sent, dict) and sent.get("refused"):
                    return {**outcome, "status": "failed", "error": f"not sent: {sent['refused']}", "finished": self.now()}
            else:
                payload = templates.render(spec.get("arguments") or {}, self.scope())
                record["input"] = payload
                yield self.context.call_activity(SEND_TOOL, self.tool_request(correlation, spec["tool"], payload))
        except templates.TemplateError as error:
            return {**outcome, "status": "failed", "error": f"its input could not be rendered: {error}",
                    "finished": self.now(), "final": True}
        except Exception as error:  # noqa: BLE001 - the send activity failed
            return {**outcome, "status": "failed", "error": f"could not be sent: {_reason(error)}", "finished": self.now()}
        self.publish()
        answer_task = self.context.wait_for_external_event(correlation)
        timer = self.context.create_timer(self.context.current_utc_datetime + timedelta(seconds=seconds))
        winner = yield self.context.task_any([answer_task, timer])
        outcome["finished"] = self.now()
        if winner is not answer_task:
            return {**outcome, "status": "failed", "error": f"no answer within {seconds} s"}
        timer.cancel()
        answer = _json(answer_task.result)
        ok = answer.get("type") == REPLY_TYPE if kind == "agent" else not answer.get("is_error")
        data = answer.get("data") if kind == "agent" else answer
        text = (data or {}).get("text") if kind == "agent" else "\n".join(
            str(item.get("text", "")) for item in answer.get("content") or [] if isinstance(item, dict))
        return {**outcome, "status": "completed" if ok else "failed", "output": {"text": text},
                "error": None if ok else (text or answer.get("error") or answer.get("type"))}

    # -- messages --------------------------------------------------------------------------------
    def agent_send(self, correlation: str, agent: str, event_type: str, data: Any, step: str) -> dict[str, Any]:
        """The send activity's input: the event, and the workflow (its namespace's routes are checked there)."""
        return {"envelope": self.agent_event(correlation, agent, event_type, data, step), "workflow": self.address}

    def agent_event(self, correlation: str, agent: str, event_type: str, data: Any, step: str) -> dict[str, Any]:
        envelope = {"id": correlation, "type": event_type, "source": ids.source(self.id),
                    "to": ids.reference(self.doc.get("namespace") or ns.DEFAULT, agent), "subject": f"{self.address}/{step}",
                    "correlation_id": correlation, "reply_to": AGENT_OUTPUTS, "time": self.now(), "data": data}
        return envelope

    def tool_request(self, call_id: str, tool: str, arguments: Any) -> dict[str, Any]:
        server, name = reach.split_tool(tool, [str(grant.get("server")) for grant in self.doc.get("tools") or []])
        request = ToolRequest(op="call_tool", agent_id=ids.caller(self.address), instance_id=self.id, call_id=call_id,
                              server=server, tool=name, arguments=arguments if isinstance(arguments, dict) else {})
        return {"request": request.model_dump(mode="json", exclude_none=True)}

    # -- state -----------------------------------------------------------------------------------
    def scope(self) -> dict[str, Any]:
        return {"input": self.input, "run": {"id": self.id, "workflow": self.address, "started": self.started},
                "steps": {step_id: {key: step.get(key) for key in ("status", "output", "error", "attempts", "started",
                                                                    "finished")}
                          for step_id, step in self.steps.items()}}

    def view(self, *, clip: bool = False) -> dict[str, Any]:
        steps = [dict(self.steps[step_id]) for step_id in self.order]
        if clip:
            for step in steps:
                for key in ("input", "output", "result"):
                    if key in step:
                        step[key] = _clip(step[key])
        return {"run_id": self.id, "workflow": self.address, "version": self.request.get("version"),
                "status": self.status, "started": self.started, "finished": self.finished,
                "trigger": self.request.get("trigger"), "input": _clip(self.input) if clip else self.input,
                "output": _clip(self.output) if clip else self.output, "error": self.error,
                "cancelled": self.cancelled, "failed_step": self.failed_step, "compensated": self.compensated,
                "steps": steps}

    def publish(self) -> None:
        self.context.set_custom_status(self.view(clip=True))

    def index(self) -> Generator[Any, Any, None]:
        row = {"run_id": self.id, "workflow": self.address, "status": self.status, "started": self.started,
               "finished": self.finished, "error": self.error, "key": self.request.get("index_key")}
        try:
            yield self.context.call_activity_with_retry(INDEX, INDEX_RETRY, row)
        except Exception:  # noqa: BLE001, S110 - the index only lists runs; the run is the orchestration
            pass

    def now(self) -> str:
        return _iso(self.context.current_utc_datetime)


def _kind(spec: dict[str, Any]) -> str:
    return next(kind for kind in STEP_KINDS if spec.get(kind) is not None)


def _timeout(spec: dict[str, Any], kind: str) -> int:
    return int(spec.get("timeout_seconds") or DEFAULT_TIMEOUTS[kind])


def _iso(moment: datetime) -> str:
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat()


def _backoff(retry: dict[str, Any], attempts_made: int) -> float:
    """Seconds to wait after ``attempts_made`` failed attempts (a step's or a compensation's ``retry``)."""
    return min(float(retry.get("backoff_seconds", 5.0)) * float(retry.get("backoff_coefficient", 2.0)) ** (attempts_made - 1),
               float(retry.get("max_backoff_seconds", 3600.0)))


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError:
            return {"text": value}
    return value if isinstance(value, dict) else {"data": value}


def _clip(value: Any) -> Any:
    text = json.dumps(value, default=str)
    if len(text) <= STATUS_VALUE_CHARS:
        return value
    return {"clipped": True, "chars": len(text), "preview": text[:STATUS_VALUE_CHARS - 200]}


def _reason(error: Any) -> str:
    text = str(error).strip()
    return text.split("\n")[0].strip()[:1000] or type(error).__name__
