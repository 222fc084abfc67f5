"""Orchestration episodes: history in, the SDK's replay engine, actions out, effects for the host.

One episode = the new messages for one instance. The engine builds the history the Durable
extension would send (schema V3), calls the registered orchestrator handler with it, checks that
the replayed actions match what history recorded (determinism), gives new actions the sequence
numbers the SDK gave them, and turns them into effects: history to append, activities, timers,
entity operations, child orchestrations, and messages to a parent.

Sequence numbers. The SDK numbers activities, timers, sub-orchestrations, entity calls/signals,
continue-as-new and CallHttp with one counter in the order it schedules them (children of
task_all/task_any depth first); external events are matched by name and take no number. Retry
tasks also number their hidden retry timer (on a failure) and their re-scheduled attempt (when
that timer fires) while the SDK processes those events. The engine therefore puts such retry
events first among an episode's new events, allocates their numbers before numbering the new
actions, and so stays in step with the SDK without reaching into its internals.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from . import history as h
from .clock import format_timestamp, parse_timestamp
from .indexing import FunctionSpec
from .replay import (
    OUT_OF_PROC_MARKER,
    ReplaySession,
    reported_failure,
    run_handler,
    session_capable,
)
from .store import InstanceRow

log = logging.getLogger("aos.engine")

TERMINAL = ("Completed", "Failed", "Terminated", "Canceled")
ACTIVE = ("Pending", "Running", "Suspended", "ContinuedAsNew")
HTTP_ACTIVITY = "BuiltIn::HttpActivity"
MAXIMUM_SHORT_TIMER = "6.00:00:00"
LONG_TIMER_INTERVAL = "3.00:00:00"

_ACTION_NAMES = {
    0: "CallActivity", 1: "CallActivityWithRetry", 2: "CallSubOrchestrator", 3: "CallSubOrchestratorWithRetry",
    4: "ContinueAsNew", 5: "CreateTimer", 6: "WaitForExternalEvent", 7: "CallEntity", 8: "CallHttp", 9: "SignalEntity",
}


@dataclass
class Instance(InstanceRow):
    """The engine's in-memory copy of one orchestration instance: its stored row plus history."""

    history: list[str] = field(default_factory=list)  # played-event JSON, in order
    persisted: int = 0  # how many history rows are already in the store
    replay: ReplaySession | None = None  # the SDK's replay kept from the last episode (a cache)

    @staticmethod
    def new_state(parent: dict[str, Any] | None = None) -> dict[str, Any]:
        return {"next_seq": 0, "recorded": [], "retries": {}, "retry_of": {}, "timers": {}, "parent": parent}


@dataclass
class ChildStart:
    instance_id: str
    name: str
    input: str | None
    parent: dict[str, Any]


@dataclass
class Effects:
    """What an episode asks the host to do, all committed in the same transaction."""

    activities: list[tuple[int, str, str | None]] = field(default_factory=list)
    timers: list[tuple[int, datetime]] = field(default_factory=list)
    cancel_timers: list[int] = field(default_factory=list)
    entity_ops: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    children: list[ChildStart] = field(default_factory=list)
    to_parent: dict[str, Any] | None = None
    restart_input: str | None = None
    continued: bool = False
    finished: bool = False
    hold_events: bool = False


def signature(action: dict[str, Any]) -> list[Any]:
    """What determinism compares: the action type and its target (name, event, entity/operation)."""
    t = int(action["actionType"])
    if t in (0, 1, 2, 3):
        name = action.get("functionName")
    elif t == 6:
        name = action.get("externalEventName")
    elif t in (7, 9):
        name = f"{action.get('instanceId')}:{action.get('operation')}"
    elif t == 8:
        request = action.get("httpRequest") or {}
        name = f"{request.get('method')} {request.get('uri')}"
    else:
        name = ""
    return [t, name]


def flatten(actions: list[Any]) -> list[dict[str, Any]]:
    """Atomic actions in scheduling order; compound WhenAll/WhenAny children depth first."""
    out: list[dict[str, Any]] = []

    def walk(action: dict[str, Any]) -> None:
        if action.get("actionType") in (11, 12):
            for child in action.get("compoundActions", []):
                walk(child)
        else:
            out.append(action)

    for group in actions:
        for action in group if isinstance(group, list) else [group]:
            walk(action)
    return out


def describe(sig: list[Any]) -> str:
    kind = _ACTION_NAMES.get(int(sig[0]), f"action {sig[0]}")
    return f"{kind} '{sig[1]}'" if sig[1] else kind


class Episode:
    """Runs one episode of one instance and collects its history and effects."""

    def __init__(self, inst: Instance, spec: FunctionSpec | None, now: datetime, *, keep_replay: bool = False) -> None:
        self.inst = inst
        self.spec = spec
        self.now = now
        self.keep_replay = keep_replay
        self.new_events: list[dict[str, Any]] = []
        self.scheduled: list[dict[str, Any]] = []
        self.effects = Effects()
        self.fed = 0  # how many of ``new_events`` the kept replay processed this episode

    # ---------------------------------------------------------------------------------------
    def run(self, messages: list[dict[str, Any]]) -> Effects:
        """Apply ``messages`` (already filtered for this execution) and, if needed, run the code."""
        inst = self.inst
        controls = [m for m in messages if "control" in m]
        events = [m["event"] for m in messages if "event" in m]
        for control in controls:
            kind = control["control"]
            if kind == "terminate":
                self._terminate(control.get("reason"))
                return self.effects
            if kind == "suspend" and inst.status in ("Running", "Pending"):
                inst.status = "Suspended"
                self.new_events.append(h.event(h.EXECUTION_SUSPENDED, self.now, Reason=control.get("reason")))
            elif kind == "resume" and inst.status == "Suspended":
                inst.status = "Running"
                self.new_events.append(h.event(h.EXECUTION_RESUMED, self.now, Reason=control.get("reason")))
        if inst.status == "Suspended" and events:
            self.effects.hold_events = True
            events = []
        if not events:
            self._commit_history(run_code=False)
            return self.effects
        if self.spec is None:
            self._fail(f"The function '{inst.name}' doesn't exist, is disabled, or is not an orchestrator function.")
            return self.effects
        specials, ordinary = self._partition(events)
        for ev in specials:
            self._allocate_retry(ev)
        for ev in specials + ordinary:
            self.new_events.append({**ev, "Timestamp": format_timestamp(self.now)} if ev.get("EventType") != h.EXECUTION_STARTED else ev)
        if inst.status in ("Pending", "ContinuedAsNew"):
            inst.status = "Running"
        self._execute()
        return self.effects

    # ---------------------------------------------------------------------------------------
    def _partition(self, events: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Retry events that make the SDK allocate a hidden sequence number go first."""
        retry_of = self.inst.state["retry_of"]
        retries = self.inst.state["retries"]
        specials, ordinary = [], []
        for ev in events:
            kind = ev.get("EventType")
            key: Any = None
            if kind in (h.TASK_FAILED, h.SUB_ORCHESTRATION_FAILED):
                key = ev.get("TaskScheduledId")
            elif kind == h.TIMER_FIRED:
                key = ev.get("TimerId")
            elif kind in (h.TASK_COMPLETED, h.SUB_ORCHESTRATION_COMPLETED):  # done: its retry record goes
                link = retry_of.pop(str(ev.get("TaskScheduledId")), None)
                if link is not None:
                    retries.pop(link[0], None)
            link = retry_of.get(str(key)) if key is not None else None
            if link is None:
                ordinary.append(ev)
                continue
            root, phase = link
            rec = retries[root]
            if phase == "timer" and rec["attempt"] >= rec["max"]:
                retry_of.pop(str(key), None)
                retries.pop(root, None)
                ordinary.append(ev)
            elif (phase == "task" and kind != h.TIMER_FIRED) or (phase == "timer" and kind == h.TIMER_FIRED):
                specials.append(ev)
            else:
                ordinary.append(ev)
        return specials, ordinary

    def _allocate_retry(self, ev: dict[str, Any]) -> None:
        state = self.inst.state
        kind = ev["EventType"]
        key = str(ev.get("TimerId") if kind == h.TIMER_FIRED else ev.get("TaskScheduledId"))
        root, phase = state["retry_of"].pop(key)
        rec = state["retries"][root]
        seq = state["next_seq"]
        state["next_seq"] += 1
        if phase == "task":
            delay_ms = rec["first_ms"] * (rec["backoff"] ** (rec["attempt"] - 1))
            if rec.get("max_ms"):
                delay_ms = min(delay_ms, rec["max_ms"])
            fire_at = self.now + timedelta(milliseconds=delay_ms)
            self.scheduled.append(h.event(h.TIMER_CREATED, self.now, seq, FireAt=format_timestamp(fire_at)))
            self.effects.timers.append((seq, fire_at))
            state["retry_of"][str(seq)] = [root, "timer"]
        else:
            rec["attempt"] += 1
            state["retry_of"][str(seq)] = [root, "task"]
            self._schedule_work(rec["kind"], seq, rec["name"], rec["input"], rec.get("instance_id"))

    def _schedule_work(self, kind: str, seq: int, name: str, input_: str | None, child_id: str | None) -> None:
        if kind == "activity":
            self.scheduled.append(h.event(h.TASK_SCHEDULED, self.now, seq, Name=name, Input=input_))
            self.effects.activities.append((seq, name, input_))
        else:
            child = child_id or f"{self.inst.instance_id}:{seq}"
            self.scheduled.append(h.event(h.SUB_ORCHESTRATION_CREATED, self.now, seq, Name=name, InstanceId=child, Input=input_))
            parent = {"instance_id": self.inst.instance_id, "execution_id": self.inst.execution_id, "task_id": seq}
            self.effects.children.append(ChildStart(child, name, input_, parent))

    # ---------------------------------------------------------------------------------------
    def _context_json(self, new: list[str]) -> str:
        inst = self.inst
        parts = inst.history + new
        parent = inst.state.get("parent") or {}
        return (
            '{"history":[' + ",".join(parts) + "]"
            + ',"instanceId":' + json.dumps(inst.instance_id)
            + ',"isReplaying":' + ("true" if inst.history else "false")
            + ',"parentInstanceId":' + json.dumps(parent.get("instance_id"))
            + ',"input":' + json.dumps(inst.input)
            + ',"upperSchemaVersion":1,"upperSchemaVersionNew":2'
            + ',"maximumShortTimerDuration":"' + MAXIMUM_SHORT_TIMER + '"'
            + ',"longRunningTimerIntervalDuration":"' + LONG_TIMER_INTERVAL + '"}'
        )

    def _execute(self) -> None:
        assert self.spec is not None
        self.new_events.insert(0, h.event(h.ORCHESTRATOR_STARTED, self.now))
        error: str | None = None
        try:
            raw = self._call_sdk()
            result = json.loads(raw) if isinstance(raw, str) else raw
        except Exception as exc:  # the SDK reports orchestrator failures by raising
            text = str(exc)
            if OUT_OF_PROC_MARKER in text:
                message, _, payload = text.partition(OUT_OF_PROC_MARKER)
                try:
                    result = json.loads(payload)
                except json.JSONDecodeError:
                    result = {"actions": []}
                error = message.strip() or str(result.get("error") or "orchestrator failed")
            else:
                result = {"actions": []}
                error = f"{type(exc).__name__}: {exc}"
        if not isinstance(result, dict):
            result = {"actions": []}
            error = error or f"orchestrator handler returned {type(raw).__name__}, expected the SDK's JSON state"
        if "customStatus" in result:
            self.inst.custom_status = json.dumps(result["customStatus"])
        flat = flatten(result.get("actions") or [])
        mismatch = self._check_determinism(flat, done=bool(result.get("isDone")) or error is not None)
        if mismatch:
            self._fail(mismatch)
            return
        if error is not None:
            self._fail(f"Orchestrator function '{self.inst.name}' failed: {error}")
            return
        self._cancel_timers(flat)
        continue_input = self._schedule_new(flat)
        if result.get("isDone"):
            if continue_input is not None:
                self._continue_as_new(continue_input)
            else:
                self._complete(result.get("output"))
            return
        self._commit_history(run_code=True)

    def _call_sdk(self) -> Any:
        """The SDK's answer for this episode: from the kept replay when there is one, else a full replay."""
        assert self.spec is not None
        inst, handler = self.inst, self.spec.user_function
        session, inst.replay = inst.replay, None  # kept again only after this episode succeeds
        if session is not None and session.execution_id == inst.execution_id and session.seen <= len(inst.history):
            try:
                raw = session.resume(inst.history[session.seen:], [h.marked(ev, False) for ev in self.new_events])
            except Exception as error:
                if reported_failure(error):
                    raise
                log.warning("kept replay of %s failed (%s: %s); replaying its history in full",
                            inst.instance_id, type(error).__name__, error)
            else:
                inst.replay = session
                self.fed = len(self.new_events)
                return raw
        new = [h.encode(ev, False) for ev in self.new_events]
        body = self._context_json(new)
        if self.keep_replay and session_capable(handler):
            session, raw = ReplaySession.start(handler, inst.execution_id, body, len(inst.history) + len(new))
            inst.replay = session
            self.fed = len(self.new_events)
            return raw
        return run_handler(handler, str(self.spec.trigger["name"]), body)

    def _check_determinism(self, flat: list[dict[str, Any]], done: bool) -> str | None:
        recorded = self.inst.state["recorded"]
        for i, (action, rec) in enumerate(zip(flat, recorded)):
            actual = signature(action)
            if actual != rec[:2]:
                return (
                    f"Non-deterministic orchestration '{self.inst.name}' ({self.inst.instance_id}): at step {i} "
                    f"history recorded {describe(rec)} but the orchestrator now scheduled {describe(actual)}"
                )
        if len(flat) < len(recorded) and not done:
            missing = recorded[len(flat)]
            return (
                f"Non-deterministic orchestration '{self.inst.name}' ({self.inst.instance_id}): history recorded "
                f"{describe(missing)} at step {len(flat)} but the orchestrator no longer schedules it"
            )
        return None

    def _cancel_timers(self, flat: list[dict[str, Any]]) -> None:
        timers = self.inst.state["timers"]
        for action, rec in zip(flat, self.inst.state["recorded"]):
            if rec[0] == 5 and action.get("isCanceled") and str(rec[2]) in timers:
                self.effects.cancel_timers.append(int(rec[2]))

    def _schedule_new(self, flat: list[dict[str, Any]]) -> str | None:
        state = self.inst.state
        recorded = state["recorded"]
        continue_input: str | None = None
        for action in flat[len(recorded):]:
            t = int(action["actionType"])
            sig = signature(action)
            if t == 6:
                recorded.append(sig + [None])
                continue
            seq = state["next_seq"]
            state["next_seq"] += 1
            recorded.append(sig + [seq])
            if t in (0, 1, 2, 3):
                kind = "activity" if t in (0, 1) else "sub"
                name = str(action.get("functionName"))
                input_ = action.get("input")
                child_id = action.get("instanceId") if kind == "sub" else None
                if t in (1, 3):
                    options = action.get("retryOptions") or {}
                    state["retries"][str(seq)] = {
                        "kind": kind, "name": name, "input": input_, "instance_id": child_id, "attempt": 1,
                        "max": int(options.get("maxNumberOfAttempts", 1)),
                        "first_ms": float(options.get("firstRetryIntervalInMilliseconds", 1000)),
                        "backoff": float(options.get("backoffCoefficient", 1.0)),
                        "max_ms": float(options.get("maxRetryIntervalInMilliseconds", 0) or 0),
                    }
                    state["retry_of"][str(seq)] = [str(seq), "task"]
                self._schedule_work(kind, seq, name, input_, child_id)
            elif t == 5:
                fire_at = parse_timestamp(str(action["fireAt"]))
                self.scheduled.append(h.event(h.TIMER_CREATED, self.now, seq, FireAt=format_timestamp(fire_at)))
                if not action.get("isCanceled"):
                    self.effects.timers.append((seq, fire_at))
            elif t in (7, 9):
                entity_id = str(action.get("instanceId"))
                request_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"{self.inst.instance_id}/{self.inst.execution_id}/{seq}"))
                signal = t == 9
                self.scheduled.append(h.event(
                    h.EVENT_SENT, self.now, seq, InstanceId=entity_id, Name="op",
                    Input=json.dumps({"id": request_id, "op": action.get("operation"), "signal": signal}),
                ))
                self.effects.entity_ops.append((entity_id, {
                    "op": action.get("operation"), "input": action.get("input"), "signal": signal, "id": request_id,
                    "parent": None if signal else self.inst.instance_id,
                    "parent_execution": None if signal else self.inst.execution_id,
                }))
            elif t == 8:
                request = json.dumps(action.get("httpRequest") or {})
                self.scheduled.append(h.event(h.TASK_SCHEDULED, self.now, seq, Name=HTTP_ACTIVITY, Input=request))
                self.effects.activities.append((seq, HTTP_ACTIVITY, request))
            elif t == 4:
                continue_input = action.get("input") if action.get("input") is not None else "null"
        return continue_input

    # ---------------------------------------------------------------------------------------
    def _commit_history(self, run_code: bool) -> None:
        events = self.new_events + self.scheduled
        if run_code:
            events.append(h.event(h.ORCHESTRATOR_COMPLETED, self.now))
        self.inst.history.extend(h.encode(ev, True) for ev in events)
        self.inst.updated_at = format_timestamp(self.now)
        if self.inst.replay is not None:  # the kept replay gets the events it has not seen as dicts
            self.inst.replay.pending.extend(h.marked(ev, True) for ev in events[self.fed:])

    def _finish(self, status: str, output: str | None, final_event: dict[str, Any]) -> None:
        inst = self.inst
        inst.status = status
        inst.output = output
        self.scheduled.append(final_event)
        self._commit_history(run_code=True)
        self.effects.finished = True
        parent = inst.state.get("parent")
        if parent:
            if status == "Completed":
                ev = h.event(h.SUB_ORCHESTRATION_COMPLETED, self.now, TaskScheduledId=parent["task_id"], Result=output)
            else:
                reason = json.loads(output) if output else status
                ev = h.event(h.SUB_ORCHESTRATION_FAILED, self.now, TaskScheduledId=parent["task_id"],
                             Reason=reason if isinstance(reason, str) else json.dumps(reason), Details=None)
            self.effects.to_parent = {"instance_id": parent["instance_id"], "execution_id": parent["execution_id"], "event": ev}

    def _complete(self, output: Any) -> None:
        encoded = json.dumps(output)
        self._finish("Completed", encoded, h.event(h.EXECUTION_COMPLETED, self.now, OrchestrationStatus="Completed", Result=encoded))

    def _fail(self, message: str) -> None:
        if not any(ev.get("EventType") == h.ORCHESTRATOR_STARTED for ev in self.new_events):
            self.new_events.insert(0, h.event(h.ORCHESTRATOR_STARTED, self.now))
        encoded = json.dumps(message)
        self._finish("Failed", encoded, h.event(h.EXECUTION_COMPLETED, self.now, OrchestrationStatus="Failed", Result=encoded))

    def _terminate(self, reason: Any) -> None:
        self.new_events.append(h.event(h.ORCHESTRATOR_STARTED, self.now))
        encoded = json.dumps(reason)
        self._finish("Terminated", encoded, h.event(h.EXECUTION_TERMINATED, self.now, Input=encoded))

    def _continue_as_new(self, input_: str) -> None:
        self.scheduled.append(h.event(h.CONTINUE_AS_NEW, self.now, Result=input_))
        self._commit_history(run_code=True)
        self.effects.continued = True
        self.effects.restart_input = input_


def install_fast_timestamp_parser() -> None:
    """Two equivalence-preserving speed-ups for the SDK's replay, which dominates episode cost.

    Timestamps: parse history timestamps with ``datetime.fromisoformat`` instead of dateutil.

    The SDK parses every history event's ``Timestamp`` on every replay with ``dateutil``, which is
    most of the cost of an episode. The engine writes only ISO 8601 UTC timestamps, for which
    ``fromisoformat`` gives the same instant; anything else still goes to dateutil.
    """
    import importlib

    module: Any = importlib.import_module("azure.durable_functions.models.history.HistoryEvent")

    original = getattr(module, "_aos_original_dt_parse", None) or module.dt_parse

    def parse(text: str, *args: Any, **kwargs: Any) -> datetime:
        if not args and not kwargs:
            try:
                return datetime.fromisoformat(text)
            except (TypeError, ValueError):
                pass
        return original(text, *args, **kwargs)

    module._aos_original_dt_parse = original
    module.dt_parse = parse

    executor: Any = importlib.import_module("azure.durable_functions.models.TaskOrchestrationExecutor")
    if not getattr(executor, "_aos_cached_namedtuple", False):
        # The executor builds the same namedtuple class on every replay; building it once is equivalent.
        build = executor.namedtuple
        classes: dict[Any, Any] = {}

        def namedtuple(typename: str, field_names: Any, **kwargs: Any) -> Any:
            key = (typename, tuple(field_names), tuple(sorted(kwargs.items())))
            if key not in classes:
                classes[key] = build(typename, field_names, **kwargs)
            return classes[key]

        executor.namedtuple = namedtuple
        executor._aos_cached_namedtuple = True
