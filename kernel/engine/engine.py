"""The durable runtime: instances, entities, activities and the scheduler loop, on one asyncio loop.

Work lives in SQLite (``store.py``) and is mirrored in memory for speed: due messages per
orchestration and per entity, future messages (timers, scheduled signals) in a heap, and queued
activities. One scheduler tick runs every due episode and entity batch in a single transaction;
activities run outside it, concurrently (sync ones in a thread pool), and their results are
committed by a later tick together with the ``TaskCompleted`` they produce. An activity row is
deleted only in that commit, so a crash re-runs it: activities are at-least-once, as on Azure.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import logging
import time
import traceback
import uuid
from collections import OrderedDict, deque
from itertools import islice
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Awaitable, Callable

from azure.functions import meta
from azure.functions.durable_functions import ActivityTriggerConverter

from . import heap
from . import history as h
from .clock import Clock, format_timestamp, parse_timestamp
from .entities import ParsedStates, entity_id_of, response_event_input, run_batch, split_entity_id
from .indexing import AppIndex, FunctionSpec
from .invoke import Invocation
from .orchestrations import ACTIVE, HTTP_ACTIVITY, TERMINAL, ChildStart, Effects, Episode, Instance, install_fast_timestamp_parser
from .store import ActivityRow, InstanceRow, MessageRow, Store

log = logging.getLogger("aos.engine")

Invoker = Callable[[FunctionSpec, dict[str, Any]], Awaitable[Invocation]]


class OrchestratorNotFound(LookupError):
    """Starting an orchestration whose function the app does not define."""


class InstanceExists(RuntimeError):
    """Starting an instance id that is still pending, running or suspended."""


class InstanceNotFound(LookupError):
    pass


class InstanceGone(RuntimeError):
    """The instance is in a terminal state (HTTP 410 in the Durable API)."""


class PurgeRefused(RuntimeError):
    pass


@dataclass
class _ActivityResult:
    row: ActivityRow
    ok: bool
    result: str | None
    reason: str | None = None
    details: str | None = None


#: Running instances kept in memory between episodes (at least ``replay_cache``); about 5 KB each.
KEPT_INSTANCES = 1024
#: Pending messages whose bodies the mirror holds; past it a new message's body stays in the store
#: only and is read back when its target runs. A start message carries the instance's input (a
#: configure command's carries the agent's config): ten thousand of them queued at once held
#: 12 MiB of parsed JSON, and the allocator kept that peak after they ran.
MIRRORED_BODIES = 1024
#: Episodes and entity batches one pass of a tick runs, of each, oldest first; a tick makes passes
#: until nothing is ready, 16 passes or TICK_RUNS runs. Work past that waits for the next tick, after
#: the commit and a turn of the event loop: ten thousand configure commands queued at once no longer
#: run in one transaction that holds the loop for seconds, and what one pass leaves behind (entity
#: calls, instances and replays) stays within the caches instead of piling up.
PASS_RUNS = 256
TICK_RUNS = 2048
#: Finished instances a purge deletes per transaction (their histories with them).
PURGE_CHUNK = 1000


class Engine:
    """Owns durable state and runs it; the host adds triggers, HTTP and the bus around it."""

    def __init__(self, index: AppIndex, store: Store, clock: Clock, invoker: Invoker, *,
                 max_concurrent_activities: int = 64, executor: Executor | None = None,
                 http_caller: Callable[[str], Awaitable[str]] | None = None, replay_cache: int = 256) -> None:
        self.index = index
        self.store = store
        self.clock = clock
        self.invoker = invoker
        self.max_concurrent_activities = max_concurrent_activities
        self.executor = executor
        self.http_caller = http_caller
        # Running instances as last saved, least recently run first (the store holds them all: one
        # not here is read back). Bounded, so ten thousand commands or turns started at once do
        # not all sit in memory with their histories; never fewer than keep a replay.
        self.instances: OrderedDict[str, Instance] = OrderedDict()
        # Instances whose SDK replay is kept between episodes (see replay.py), least recent first.
        self.replay_cache = max(0, replay_cache)
        self.instance_cache = max(KEPT_INSTANCES, self.replay_cache)
        self._replays: OrderedDict[str, None] = OrderedDict()
        # Entities' last states as live objects (see entities.ParsedStates), as many as replays kept.
        self.entity_states = ParsedStates(self.replay_cache)
        self.ready_orch: dict[str, list[MessageRow]] = {}
        self.ready_entity: dict[str, list[MessageRow]] = {}
        self.held: dict[str, list[MessageRow]] = {}
        self.future: list[tuple[datetime, int, MessageRow]] = []
        self.cancelled: set[int] = set()
        # Pending messages in ready_orch, ready_entity and future whose body is in memory (held
        # messages never keep theirs): at most MIRRORED_BODIES.
        self.mirrored_bodies = 0
        self.activity_queue: deque[ActivityRow] = deque()
        self.activity_running = 0
        self.activity_results: list[_ActivityResult] = []
        self._to_dispatch: list[ActivityRow] = []
        # Runs (episodes and entity batches) since memory was last given back (see heap.py), and how
        # many times it was.
        self.runs_since_release = 0
        self.memory_releases = 0
        self._quiet_since: float | None = None
        self.tick_hooks: list[Callable[[datetime], None]] = []
        self.after_tick_hooks: list[Callable[[], None]] = []
        self.busy_hooks: list[Callable[[], bool]] = []
        self.deadline_hooks: list[Callable[[], datetime | None]] = []
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._activity_tasks: set[asyncio.Task[None]] = set()
        self.fatal: BaseException | None = None
        clock.subscribe(self.notify)
        install_fast_timestamp_parser()

    # lifecycle -------------------------------------------------------------------------------
    def load(self) -> None:
        """(Re)build the in-memory mirror from the store: messages, activities; drop caches."""
        self.instances.clear()
        self._replays.clear()
        self.entity_states.clear()
        self.ready_orch.clear()
        self.ready_entity.clear()
        self.held.clear()
        self.future.clear()
        self.cancelled.clear()
        self.activity_queue.clear()
        self.activity_results.clear()
        self._to_dispatch.clear()
        self.mirrored_bodies = 0
        suspended = frozenset(r.instance_id for r in self.store.query_instances(statuses=["Suspended"]))
        now = self.clock.now()
        for msg in self.store.load_messages(MIRRORED_BODIES, always=suspended):
            if msg.kind == "orch" and msg.target in suspended and "control" not in (msg.body or {}):
                msg.body = None
                self.held.setdefault(msg.target, []).append(msg)
            else:
                self._admit(msg)
                self._enqueue(msg, now)
        self.activity_queue.extend(self.store.load_activities())

    def start(self) -> None:
        self.load()
        self._task = asyncio.create_task(self._loop(), name="aos-engine-scheduler")

    async def stop(self) -> None:
        self._stopping = True
        self.notify()
        if self._task is not None:
            await self._task
        for task in list(self._activity_tasks):
            task.cancel()
        if self._activity_tasks:
            await asyncio.gather(*self._activity_tasks, return_exceptions=True)

    def notify(self) -> None:
        self._wake.set()

    async def _loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            try:
                self.tick()
            except Exception as error:  # an engine bug: roll back (done) and rebuild from the store
                log.exception("scheduler tick failed; reloading state from the store")
                self.fatal = error
                self.load()
            self._dispatch_activities()
            for hook in self.after_tick_hooks:
                hook()
            progress, self._progress = self._progress, asyncio.Event()
            progress.set()
            if self._immediate_work():
                await asyncio.sleep(0)
                continue
            release_in = self._release_due_in()
            if release_in == 0.0:
                self.release_memory()
                release_in = None
            timeout: float | None = release_in
            if not self.clock.virtual:
                deadline = self.next_deadline()
                if deadline is not None:
                    until = max(0.0, (deadline - self.clock.now()).total_seconds())
                    timeout = until if timeout is None else min(timeout, until)
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except asyncio.TimeoutError:
                pass

    def _release_due_in(self) -> float | None:
        """Seconds until memory is given back (see heap.py): None unless a burst of runs is over and
        nothing is running; the engine must then stay quiet for ``RELEASE_AFTER_QUIET_SECONDS``, so a
        pause inside a burst (a config sync between its chunks) does not drop the caches it is using."""
        if self.runs_since_release < heap.RELEASE_AFTER_RUNS or self.activity_queue or self.activity_running:
            self._quiet_since = None
            return None
        now = time.monotonic()
        if self._quiet_since is None:
            self._quiet_since = now
        return max(0.0, self._quiet_since + heap.RELEASE_AFTER_QUIET_SECONDS - now)

    def release_memory(self) -> None:
        """Give back what a burst left unused: the entities' parsed states it cached (a registration's
        are ten thousand sleeping agents' configs), the store's page cache and the C heap's free pages."""
        self.entity_states.clear()
        heap.release([self.store.conn])
        self.runs_since_release = 0
        self.memory_releases += 1

    def _immediate_work(self) -> bool:
        return bool(self.ready_orch or self.ready_entity or self.activity_results)

    def next_deadline(self) -> datetime | None:
        candidates = [d for d in (hook() for hook in self.deadline_hooks) if d is not None]
        while self.future and self.future[0][1] in self.cancelled:
            _, msg_id, msg = heapq.heappop(self.future)
            self.cancelled.discard(msg_id)
            self._forget([msg])
        if self.future:
            candidates.append(self.future[0][0])
        return min(candidates) if candidates else None

    def has_work(self) -> bool:
        """Anything pending or running, except timers and messages scheduled for later."""
        if self.ready_orch or self.ready_entity or self.activity_queue or self.activity_running or self.activity_results:
            return True
        deadline = self.next_deadline()
        if deadline is not None and deadline <= self.clock.now():
            return True
        return any(hook() for hook in self.busy_hooks)

    async def wait_idle(self, timeout: float = 10.0) -> None:
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        quiet = 0
        poke = True
        while True:
            if self.fatal is not None:
                error, self.fatal = self.fatal, None
                raise RuntimeError(f"the engine's scheduler failed: {error}") from error
            if not self.has_work():
                quiet += 1
                if quiet >= 2:
                    return
                await asyncio.sleep(0)
                continue
            quiet = 0
            remaining = end - loop.time()
            if remaining <= 0:
                raise TimeoutError(f"engine still busy after {timeout}s: {self.describe_work()}")
            # Whatever makes work (a post, a send, an activity's end, the clock) wakes the loop
            # itself; waking it on every pass here only made it spin while an activity ran. A poke
            # after 50 ms without progress stays as a safety net.
            if poke:
                self.notify()
            try:
                await asyncio.wait_for(self._progress.wait(), min(remaining, 0.05))
                poke = False
            except asyncio.TimeoutError:
                poke = True

    def describe_work(self) -> str:
        return (f"{len(self.ready_orch)} orchestrations and {len(self.ready_entity)} entities ready, "
                f"{len(self.activity_queue)} activities queued, {self.activity_running} running")

    # messages --------------------------------------------------------------------------------
    def _admit(self, msg: MessageRow) -> None:
        """Count ``msg``'s body as mirrored, or leave it in the store when enough are."""
        if msg.body is None:
            return
        if self.mirrored_bodies >= MIRRORED_BODIES:
            msg.body = None
        else:
            self.mirrored_bodies += 1

    def _forget(self, msgs: list[MessageRow]) -> None:
        """``msgs`` leave the mirror: their bodies in memory no longer count."""
        self.mirrored_bodies -= sum(1 for m in msgs if m.body is not None)

    def _release(self, msgs: list[MessageRow]) -> list[MessageRow]:
        """``msgs`` leave the mirror to run: returns them with every body read from the store (a
        message no longer there has nothing left to deliver and is left out)."""
        self._forget(msgs)
        missing = [m.id for m in msgs if m.body is None]
        if not missing:
            return msgs
        bodies = self.store.message_bodies(missing)
        for m in msgs:
            if m.body is None:
                m.body = bodies.get(m.id)
        return [m for m in msgs if m.body is not None]

    def _enqueue(self, msg: MessageRow, now: datetime) -> None:
        due = parse_timestamp(msg.due_at)
        if due > now:
            heapq.heappush(self.future, (due, msg.id, msg))
        elif msg.kind == "orch":
            self.ready_orch.setdefault(msg.target, []).append(msg)
        else:
            self.ready_entity.setdefault(msg.target, []).append(msg)

    def post(self, kind: str, target: str, body: dict[str, Any], due: datetime | None = None) -> int:
        """Persist a message (inside the caller's transaction) and mirror it in memory."""
        now = self.clock.now()
        due_at = format_timestamp(due or now)
        msg_id = self.store.add_message(kind, target, due_at, body)
        msg = MessageRow(msg_id, kind, target, due_at, body)
        self._admit(msg)
        self._enqueue(msg, now)
        self.notify()
        return msg_id

    def _cancel(self, msg_ids: list[int]) -> None:
        ids = [i for i in msg_ids if i]
        self.store.delete_messages(ids)
        self.cancelled.update(ids)

    def _drop_pending(self, kind: str, target: str) -> None:
        self.store.delete_messages_for(kind, target)
        self._forget((self.ready_orch if kind == "orch" else self.ready_entity).pop(target, []))
        if kind == "orch":
            self.held.pop(target, None)
        self.cancelled.update(m.id for _, _, m in self.future if m.kind == kind and m.target == target)

    # tick ------------------------------------------------------------------------------------
    def tick(self) -> None:
        now = self.clock.now()
        with self.store.transaction():
            results, self.activity_results = self.activity_results, []
            for res in results:
                self._apply_activity_result(res, now)
            while self.future and self.future[0][0] <= now:
                _, msg_id, msg = heapq.heappop(self.future)
                if msg_id in self.cancelled:
                    self.cancelled.discard(msg_id)
                    self._forget([msg])
                    continue
                self._enqueue(msg, now)
            for hook in self.tick_hooks:
                hook(now)
            rounds = runs = 0
            while (self.ready_orch or self.ready_entity) and rounds < 16 and runs < TICK_RUNS:
                rounds += 1
                for instance_id in list(islice(self.ready_orch, PASS_RUNS)):
                    self._run_instance(instance_id, now)
                    runs += 1
                for entity_id in list(islice(self.ready_entity, PASS_RUNS)):
                    self._run_entity(entity_id, now)
                    runs += 1
            if runs:
                self.runs_since_release += runs
                self._quiet_since = None

    def _get_instance(self, instance_id: str) -> Instance | None:
        inst = self.instances.get(instance_id)
        if inst is not None:
            self.instances.move_to_end(instance_id)
            return inst
        row = self.store.load_instance(instance_id)
        if row is None:
            return None
        inst = Instance(**vars(row))
        inst.history = self.store.load_history(instance_id)
        inst.persisted = len(inst.history)
        if inst.status not in TERMINAL:
            self._remember(inst)
        return inst

    def _remember(self, inst: Instance) -> None:
        """Keep ``inst`` as the most recently run; past ``instance_cache``, the least recently run
        is let go (with its kept replay: it replays in full when it next runs)."""
        self.instances[inst.instance_id] = inst
        self.instances.move_to_end(inst.instance_id)
        while len(self.instances) > self.instance_cache:
            evicted, dropped = self.instances.popitem(last=False)
            dropped.replay = None
            self._replays.pop(evicted, None)

    def _save(self, inst: Instance) -> None:
        if len(inst.history) > inst.persisted:
            self.store.append_history(inst.instance_id, inst.persisted, inst.history[inst.persisted:])
            inst.persisted = len(inst.history)
        self.store.save_instance(inst)

    def _run_instance(self, instance_id: str, now: datetime) -> None:
        msgs = self._release(self.ready_orch.pop(instance_id, []))
        inst = self._get_instance(instance_id)
        if inst is None or inst.status in TERMINAL:
            self.store.delete_messages([m.id for m in msgs])
            return
        live = [m for m in msgs if m.body.get("execution_id") in (None, inst.execution_id)]
        stale = [m.id for m in msgs if m not in live]
        if not live:
            self.store.delete_messages(stale)
            return
        episode = Episode(inst, self.index.orchestrators.get(inst.name), now, keep_replay=self.replay_cache > 0)
        effects = episode.run([m.body for m in live])
        self._keep_replay(inst)
        if effects.hold_events:
            controls = [m for m in live if "control" in m.body]
            for m in live:
                if "control" not in m.body:
                    m.body = None  # held until resumed: read back then
                    self.held.setdefault(instance_id, []).append(m)
            consumed = [m.id for m in controls] + stale
        else:
            consumed = [m.id for m in msgs]
        self.store.delete_messages(consumed)
        self._apply(inst, effects, now)
        if inst.status == "Running" and instance_id in self.held:
            for msg in self.held.pop(instance_id):
                self.ready_orch.setdefault(instance_id, []).append(msg)

    def _keep_replay(self, inst: Instance) -> None:
        """Track ``inst``'s kept replay; past ``replay_cache`` of them, the least recent is dropped."""
        if inst.replay is None or inst.status in TERMINAL:
            inst.replay = None
            self._replays.pop(inst.instance_id, None)
            return
        self._replays[inst.instance_id] = None
        self._replays.move_to_end(inst.instance_id)
        while len(self._replays) > self.replay_cache:
            evicted, _ = self._replays.popitem(last=False)
            cached = self.instances.get(evicted)
            if cached is not None:
                cached.replay = None

    def _apply(self, inst: Instance, effects: Effects, now: datetime) -> None:
        state = inst.state
        timers: dict[str, int | None] = state["timers"]
        self._cancel([timers.pop(str(seq), None) or 0 for seq in effects.cancel_timers])
        if effects.finished or effects.continued:
            self._cancel([mid or 0 for mid in timers.values()])
            timers.clear()
        else:
            for seq, fire_at in effects.timers:
                event = h.event(h.TIMER_FIRED, fire_at, TimerId=seq, FireAt=format_timestamp(fire_at))
                timers[str(seq)] = self.post("orch", inst.instance_id, {"event": event, "execution_id": inst.execution_id}, fire_at)
        for seq, name, input_ in effects.activities:
            row_id = self.store.add_activity(inst.instance_id, inst.execution_id, seq, name, input_)
            self._to_dispatch.append(ActivityRow(row_id, inst.instance_id, inst.execution_id, seq, name, input_))
        for entity_id, request in effects.entity_ops:
            self.post("entity", entity_id, request)
        for child in effects.children:
            self._start_child(child, now)
        if effects.to_parent:
            parent = effects.to_parent
            self.post("orch", parent["instance_id"], {"event": parent["event"], "execution_id": parent["execution_id"]})
        if effects.continued:
            inst.execution_id = uuid.uuid4().hex
            inst.input = effects.restart_input
            inst.status = "ContinuedAsNew"
            inst.history = []
            inst.persisted = 0
            inst.replay = None
            inst.state = Instance.new_state(state.get("parent"))
            self.store.clear_history(inst.instance_id)
            self.post("orch", inst.instance_id, self._start_message(inst, now))
        self._save(inst)
        if inst.status in TERMINAL:
            self.instances.pop(inst.instance_id, None)

    def _start_message(self, inst: Instance, now: datetime) -> dict[str, Any]:
        parent = inst.state.get("parent") or None
        event = h.event(h.EXECUTION_STARTED, now, Name=inst.name, Input=inst.input, Version="",
                        OrchestrationInstance={"InstanceId": inst.instance_id, "ExecutionId": inst.execution_id},
                        ParentInstance=parent)
        return {"event": event, "execution_id": inst.execution_id}

    def _start_child(self, child: ChildStart, now: datetime) -> None:
        existing = self._get_instance(child.instance_id)
        if child.name not in self.index.orchestrators or (existing is not None and existing.status in ACTIVE):
            reason = (f"An Orchestration instance with the status {existing.status} already exists."
                      if existing is not None and existing.status in ACTIVE else
                      f"The function '{child.name}' doesn't exist, is disabled, or is not an orchestrator function.")
            event = h.event(h.SUB_ORCHESTRATION_FAILED, now, TaskScheduledId=child.parent["task_id"], Reason=reason, Details=None)
            self.post("orch", child.parent["instance_id"], {"event": event, "execution_id": child.parent["execution_id"]})
            return
        self._create_instance(child.instance_id, child.name, child.input, now, parent=child.parent)

    def _create_instance(self, instance_id: str, name: str, input_: str | None, now: datetime,
                         parent: dict[str, Any] | None = None) -> Instance:
        if self.store.load_instance(instance_id) is not None:
            self._drop_pending("orch", instance_id)
            self.store.delete_instance(instance_id)
            self.instances.pop(instance_id, None)
        stamp = format_timestamp(now)
        inst = Instance(instance_id, name, uuid.uuid4().hex, "Pending", input_, None, None, stamp, stamp,
                        Instance.new_state(parent))
        self._remember(inst)
        self._save(inst)
        self.post("orch", instance_id, self._start_message(inst, now))
        return inst

    def _run_entity(self, entity_id: str, now: datetime) -> None:
        msgs = self._release(self.ready_entity.pop(entity_id, []))
        if not msgs:
            return
        name, key = split_entity_id(entity_id)
        loaded = self.store.load_entity(entity_id)
        exists, state = loaded if loaded else (False, None)
        outcome = run_batch(self.index.entities.get(name), entity_id, exists, state, [m.body for m in msgs],
                            self.entity_states)
        self.store.save_entity(entity_id, name, key, outcome.exists, outcome.state, format_timestamp(now))
        for item in outcome.results:
            request = item.request
            if request.get("signal"):
                if item.is_error:
                    log.warning("entity %s operation '%s' failed: %s", entity_id, request.get("op"), item.result)
                continue
            event = h.event(h.EVENT_RAISED, now, Name=request["id"], Input=response_event_input(item))
            self.post("orch", str(request["parent"]), {"event": event, "execution_id": request.get("parent_execution")})
        self.store.delete_messages([m.id for m in msgs])

    # activities ------------------------------------------------------------------------------
    def _dispatch_activities(self) -> None:
        if self._to_dispatch:
            self.activity_queue.extend(self._to_dispatch)
            self._to_dispatch = []
        while self.activity_queue and self.activity_running < self.max_concurrent_activities:
            row = self.activity_queue.popleft()
            self.activity_running += 1
            task = asyncio.create_task(self._run_activity(row))
            self._activity_tasks.add(task)
            task.add_done_callback(self._activity_tasks.discard)

    async def _run_activity(self, row: ActivityRow) -> None:
        try:
            result = await self._execute_activity(row)
        except asyncio.CancelledError:
            self.activity_running -= 1
            raise
        self.activity_running -= 1
        self.activity_results.append(result)
        self.notify()

    async def _execute_activity(self, row: ActivityRow) -> _ActivityResult:
        try:
            if row.name == HTTP_ACTIVITY:
                if self.http_caller is None:
                    raise RuntimeError("durable HTTP calls (context.call_http) are not available in this host")
                return _ActivityResult(row, True, await self.http_caller(row.input or "{}"))
            spec = self.index.activities.get(row.name)
            if spec is None:
                return _ActivityResult(row, False, None,
                                       f"The function '{row.name}' doesn't exist, is disabled, or is not an activity function.", "")
            value = None if row.input is None else ActivityTriggerConverter.decode(meta.Datum(row.input, "json"), trigger_metadata={})
            invocation = await self.invoker(spec, {str(spec.trigger["name"]): value})
            encoded = ActivityTriggerConverter.encode(invocation.result, expected_type=None)
            return _ActivityResult(row, True, encoded.value)
        except Exception as exc:
            reason = f"Activity function '{row.name}' failed: {type(exc).__name__}: {exc}"
            return _ActivityResult(row, False, None, reason, traceback.format_exc())

    def _apply_activity_result(self, res: _ActivityResult, now: datetime) -> None:
        row = res.row
        self.store.delete_activity(row.id)
        if res.ok:
            event = h.event(h.TASK_COMPLETED, now, TaskScheduledId=row.task_id, Result=res.result)
        else:
            event = h.event(h.TASK_FAILED, now, TaskScheduledId=row.task_id, Reason=res.reason, Details=res.details)
        self.post("orch", row.instance_id, {"event": event, "execution_id": row.execution_id})

    # client operations (the Durable HTTP API calls these) ----------------------------------------
    def start_instance(self, name: str, instance_id: str | None, input_: str | None) -> str:
        if name not in self.index.orchestrators:
            raise OrchestratorNotFound(
                f"The function '{name}' doesn't exist, is disabled, or is not an orchestrator function. "
                f"Additional info: the app defines these orchestrator functions: {', '.join(sorted(self.index.orchestrators)) or 'none'}."
            )
        instance_id = instance_id or uuid.uuid4().hex
        with self.store.transaction():
            existing = self._get_instance(instance_id)
            if existing is not None and existing.status in ACTIVE:
                raise InstanceExists(f"An Orchestration instance with the status {existing.status} already exists.")
            self._create_instance(instance_id, name, input_, self.clock.now())
        return instance_id

    def _require(self, instance_id: str, *, allow_failed: bool = True) -> Instance:
        inst = self._get_instance(instance_id)
        if inst is None:
            raise InstanceNotFound(f"No instance with ID '{instance_id}' found.")
        if inst.status in TERMINAL:
            raise InstanceGone(f"Instance with ID {instance_id} is gone: either completed or failed")
        return inst

    def raise_event(self, instance_id: str, name: str, data_json: str) -> None:
        with self.store.transaction():
            self._require(instance_id)
            event = h.event(h.EVENT_RAISED, self.clock.now(), Name=name, Input=data_json)
            self.post("orch", instance_id, {"event": event})

    def control(self, instance_id: str, kind: str, reason: str | None) -> None:
        """Terminate, suspend or resume an instance (the message is processed by the next tick)."""
        with self.store.transaction():
            self._require(instance_id)
            self.post("orch", instance_id, {"control": kind, "reason": reason})
            if kind in ("resume", "terminate") and instance_id in self.held:
                for msg in self.held.pop(instance_id):
                    self.ready_orch.setdefault(instance_id, []).append(msg)

    def purge(self, instance_id: str) -> int:
        with self.store.transaction():
            row = self.store.load_instance(instance_id)
            if row is None:
                return 0
            if row.status not in TERMINAL:
                raise PurgeRefused(f"Instance '{instance_id}' is {row.status}; only completed, failed or terminated instances can be purged.")
            self.store.delete_instance(instance_id)
            self._drop_pending("orch", instance_id)
            self.instances.pop(instance_id, None)
        return 1

    def purge_by(self, created_from: str | None, created_to: str | None, statuses: list[str] | None) -> int:
        """Purge the finished instances created in the window whose status is in ``statuses`` (any
        finished status when None; running ones are never purged). Retention purges thousands of
        turns at once, so only their ids are read and they go in set-based deletes, a chunk per
        transaction; the whole call runs on the engine's loop, so no instance restarts under it."""
        wanted = [status for status in (statuses or TERMINAL) if status in TERMINAL]
        ids = self.store.instance_ids(created_from=created_from, created_to=created_to, statuses=wanted)
        if not ids:
            return 0
        pending_later = {m.target for _, _, m in self.future if m.kind == "orch"}
        for start in range(0, len(ids), PURGE_CHUNK):
            chunk = ids[start:start + PURGE_CHUNK]
            with self.store.transaction():
                self.store.delete_instances(chunk)
                for instance_id in chunk:
                    if instance_id in self.ready_orch or instance_id in self.held or instance_id in pending_later:
                        self._drop_pending("orch", instance_id)
                    self.instances.pop(instance_id, None)
        return len(ids)

    def status(self, instance_id: str, *, show_input: bool = True, show_history: bool = False) -> dict[str, Any] | None:
        row = self.store.load_instance(instance_id)
        if row is None:
            return None
        payload = status_payload(row, show_input)
        if show_history:
            payload["historyEvents"] = [_readable(json.loads(ev)) for ev in self.store.load_history(instance_id)]
        return payload

    def query(self, *, created_from: str | None = None, created_to: str | None = None,
              statuses: list[str] | None = None, prefix: str | None = None, show_input: bool = False) -> list[dict[str, Any]]:
        rows = self.store.query_instances(created_from=created_from, created_to=created_to, statuses=statuses, prefix=prefix)
        return [status_payload(r, show_input) for r in rows]

    def signal_entity(self, name: str, key: str, operation: str, input_: str | None) -> None:
        with self.store.transaction():
            self.post("entity", entity_id_of(name, key), {"op": operation, "input": input_, "signal": True, "id": uuid.uuid4().hex})

    def read_entity(self, name: str, key: str) -> str | None:
        found = self.store.load_entity(entity_id_of(name, key))
        if found is None or not found[0]:
            return None
        return found[1] if found[1] is not None else "null"


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _short(stamp: str) -> str:
    return stamp[:19] + "Z"


def status_payload(row: InstanceRow, show_input: bool) -> dict[str, Any]:
    """The status JSON of the Durable HTTP API (``DurableOrchestrationStatus`` reads it)."""
    return {
        "name": row.name,
        "instanceId": row.instance_id,
        "runtimeStatus": row.status,
        "input": _loads(row.input) if show_input else None,
        "customStatus": _loads(row.custom_status),
        "output": _loads(row.output),
        "createdTime": _short(row.created_at),
        "lastUpdatedTime": _short(row.updated_at),
    }


def _readable(event: dict[str, Any]) -> dict[str, Any]:
    event = dict(event)
    event.pop("IsPlayed", None)
    event["EventType"] = h.NAMES.get(int(event.get("EventType", -1)), event.get("EventType"))
    return event
