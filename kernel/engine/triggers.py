"""Service Bus and timer triggers, driven by the scheduler tick.

Service Bus: each trigger binding polls its queue or subscription with peek-lock; a successful
invocation completes the message and sends its output-binding messages in one transaction; an
exception abandons it (the delivery count goes up, and the bus dead-letters it with
``MaxDeliveryCountExceeded`` at the entity's ``max_delivery_count``). ``func.ServiceBusMessage``
objects are built by the SDK's own converter from the trigger metadata the host would send.

Timers: six-field NCRONTAB (``kernel.ncrontab``); the next occurrence is persisted, so a host that
was down when an occurrence fell due fires once on restart with ``past_due`` set, like Azure.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any, Awaitable, Callable

from azure.functions import meta
from azure.functions.servicebus import ServiceBusMessageInConverter
from azure.functions.timer import TimerRequestConverter

from kernel import ncrontab

from .bus import EmbeddedBus, OutgoingMessage, ReceivedMessage
from .clock import Clock, format_timestamp, parse_timestamp
from .indexing import AppIndex, FunctionSpec, IndexingError
from .invoke import Invocation
from .store import Store

log = logging.getLogger("aos.engine.triggers")

Invoker = Callable[[FunctionSpec, dict[str, Any]], Awaitable[Invocation]]


def trigger_path(spec: FunctionSpec) -> str:
    """The queue or ``topic/Subscriptions/sub`` a Service Bus trigger reads."""
    trigger = spec.trigger
    if trigger.get("queueName"):
        return str(trigger["queueName"])
    return f"{trigger['topicName']}/Subscriptions/{trigger['subscriptionName']}"


def _sdk_time(when: datetime | None) -> str | None:
    """A message time as the worker's converter parses it fastest: it tries a list of formats in
    order, and this one (``+00:00``, microseconds) is the first that keeps sub-second precision;
    the ``Z`` form was the sixth, five failed ``strptime`` calls per field (4 % of a turn)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f+00:00") if when is not None else None


def _metadata(message: ReceivedMessage) -> dict[str, Any]:
    return {
        "ApplicationProperties": message.application_properties, "UserProperties": message.application_properties,
        "ContentType": message.content_type, "CorrelationId": message.correlation_id,
        "DeadLetterReason": message.dead_letter_reason,
        "DeadLetterErrorDescription": message.dead_letter_error_description,
        "DeadLetterSource": message.dead_letter_source, "DeliveryCount": message.delivery_count,
        "EnqueuedTimeUtc": _sdk_time(message.enqueued_time),
        "ExpiresAtUtc": _sdk_time(message.expires_at),
        "Label": message.subject, "Subject": message.subject,
        "LockedUntil": _sdk_time(message.locked_until),
        "LockToken": message.lock_token, "MessageId": message.message_id, "ReplyTo": message.reply_to,
        "ScheduledEnqueueTimeUtc": _sdk_time(message.scheduled_enqueue_time),
        "SequenceNumber": message.sequence_number, "SessionId": message.session_id, "To": message.to,
    }


def _datum(value: Any) -> meta.Datum | None:
    if value is None:
        return None
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        return meta.Datum(json.dumps(value), "json")
    if isinstance(value, int):
        return meta.Datum(value, "int")
    return meta.Datum(str(value), "string")


#: Messages per call of the SDK's converter when a batch is delivered. It parses every metadata
#: array again for each message, so one call over a batch of n messages costs n²: 219 µs a message
#: at 100 (111 µs at 1). The function still receives the whole batch as one list.
CONVERT_CHUNK = 16


def build_messages(messages: list[ReceivedMessage], many: bool) -> Any:
    """``func.ServiceBusMessage`` (or a list of them) via the SDK's converter, as the worker builds it."""
    if not many:
        fields = _metadata(messages[0])
        metadata = {k: d for k, v in fields.items() if (d := _datum(v)) is not None}
        return ServiceBusMessageInConverter.decode(meta.Datum(messages[0].body, "bytes"), trigger_metadata=metadata)
    converted: list[Any] = []
    for start in range(0, len(messages), CONVERT_CHUNK):
        chunk = messages[start:start + CONVERT_CHUNK]
        arrays: dict[str, meta.Datum] = {}
        rows = [_metadata(m) for m in chunk]
        for key in rows[0]:
            arrays[key + "Array"] = meta.Datum(json.dumps([row[key] for row in rows]), "json")
        data = meta.Datum(SimpleNamespace(bytes=[m.body for m in chunk]), "collection_bytes")
        converted.extend(ServiceBusMessageInConverter.decode(data, trigger_metadata=arrays))
    return converted


def outgoing(value: Any, binding: dict[str, Any]) -> list[OutgoingMessage]:
    """What a Service Bus output binding's value becomes on the bus (str, bytes, or a list of them)."""
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        if isinstance(item, str):
            out.append(OutgoingMessage(body=item.encode("utf-8")))
        elif isinstance(item, (bytes, bytearray)):
            out.append(OutgoingMessage(body=bytes(item)))
        else:
            raise TypeError(f"Service Bus output binding '{binding.get('name')}' accepts str or bytes, got {type(item).__name__}")
    return out


def send_outputs(bus: EmbeddedBus, spec: FunctionSpec, invocation: Invocation) -> None:
    """Send the values set on ``serviceBus`` output bindings (inside the caller's transaction)."""
    for binding in spec.outputs:
        if binding.get("type") != "serviceBus":
            continue
        name = str(binding.get("name"))
        value = invocation.result if name == "$return" else invocation.outputs.get(name)
        if value is None:
            continue
        entity = str(binding.get("queueName") or binding.get("topicName"))
        bus.send(entity, outgoing(value, binding))


@dataclass
class _Poller:
    spec: FunctionSpec
    path: str
    many: bool
    inflight: int = 0
    # The bus's change count when a receive last found the entity drained, and when something
    # falls due there without a send (``next_visible_at`` then); until either moves, polling
    # it would find nothing, so the tick skips it.
    drained_at: int | None = None
    drained_due: datetime | None = None
    # ``deadline()``'s cache: the change count it was computed at, and the moment.
    deadline_at: int | None = None
    deadline: datetime | None = None


class ServiceBusTriggers:
    """Delivers bus messages to Service Bus-triggered functions."""

    def __init__(self, index: AppIndex, bus: EmbeddedBus, store: Store, invoker: Invoker, notify: Callable[[], None], *,
                 max_concurrent_calls: int = 16, max_batch: int = 100) -> None:
        self.bus = bus
        self.store = store
        self.invoker = invoker
        self.notify = notify
        self.max_concurrent_calls = max_concurrent_calls
        self.max_batch = max_batch
        self.pollers = [
            _Poller(spec, trigger_path(spec), str(spec.trigger.get("cardinality", "ONE")).upper() == "MANY")
            for spec in index.by_trigger("serviceBusTrigger")
        ]
        self.dirty = True
        self._tasks: set[asyncio.Task[None]] = set()

    def poll(self, now: datetime) -> None:
        """Receive what each trigger has room for and start the invocations (tick hook).

        An entity found drained is not queried again until the bus reports a change to it or a
        scheduled message, lock or TTL there falls due (each receive brings those up to date,
        so expired locks are released by the receive that would deliver them again).
        """
        self.dirty = False
        for poller in self.pollers:
            free = self.max_concurrent_calls - poller.inflight
            if free <= 0:
                self.dirty = True
                continue
            if poller.many and poller.inflight:
                continue
            if poller.drained_at == self.bus.change_count(poller.path) and (
                    poller.drained_due is None or poller.drained_due > now):
                continue
            wanted = self.max_batch if poller.many else free
            messages = self.bus.receive(poller.path, max_count=wanted)
            if poller.many:
                if messages:
                    self._start(poller, messages)
            else:
                for message in messages:
                    self._start(poller, [message])
            if len(messages) == wanted or (poller.many and messages):
                self.dirty = True
                poller.drained_at = None
            else:
                self._drained(poller)

    def _drained(self, poller: _Poller) -> None:
        due = self.bus.next_visible_at(poller.path)
        poller.drained_at = poller.deadline_at = self.bus.change_count(poller.path)
        poller.drained_due = poller.deadline = due

    def _start(self, poller: _Poller, messages: list[ReceivedMessage]) -> None:
        poller.inflight += 1
        task = asyncio.create_task(self._deliver(poller, messages))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _deliver(self, poller: _Poller, messages: list[ReceivedMessage]) -> None:
        spec = poller.spec
        try:
            argument = build_messages(messages, poller.many)
            invocation = await self.invoker(spec, {str(spec.trigger["name"]): argument})
            with self.store.transaction():
                send_outputs(self.bus, spec, invocation)
                for message in messages:
                    self.bus.complete(str(message.lock_token))
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("Service Bus function '%s' failed; abandoning %d message(s)", spec.name, len(messages))
            try:
                with self.store.transaction():
                    for message in messages:
                        self.bus.abandon(str(message.lock_token))
            except Exception:
                log.exception("could not abandon messages for '%s' (lock lost?)", spec.name)
        finally:
            poller.inflight -= 1
            self.dirty = True
            self.notify()

    def busy(self) -> bool:
        return self.dirty or any(p.inflight for p in self.pollers)

    def deadline(self) -> datetime | None:
        """The next moment a trigger's entity changes without a send (cached per change count)."""
        moments = []
        for poller in self.pollers:
            if poller.deadline_at != self.bus.change_count(poller.path) or (
                    poller.deadline is not None and poller.deadline <= self.bus.now()):
                poller.deadline = self.bus.next_visible_at(poller.path)
                poller.deadline_at = self.bus.change_count(poller.path)
            if poller.deadline is not None:
                moments.append(poller.deadline)
        return min(moments) if moments else None

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


@dataclass
class _Timer:
    spec: FunctionSpec
    schedule: str
    next_fire: datetime
    last_fire: datetime | None
    running: bool = False
    past_due_pending: bool = False


class TimerTriggers:
    """Fires timer-triggered functions on their NCRONTAB schedules."""

    def __init__(self, index: AppIndex, store: Store, clock: Clock, invoker: Invoker, notify: Callable[[], None]) -> None:
        self.store = store
        self.clock = clock
        self.invoker = invoker
        self.notify = notify
        self.timers: list[_Timer] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._specs = index.by_trigger("timerTrigger")
        for spec in self._specs:
            schedule = str(spec.trigger.get("schedule"))
            try:
                ncrontab.validate(schedule)
            except ncrontab.NcrontabError as error:
                raise IndexingError(f"function '{spec.name}': timer schedule '{schedule}': {error}") from error

    def start(self, now: datetime) -> None:
        """Load persisted schedules; fire ``run_on_startup`` timers and occurrences missed while down."""
        for spec in self._specs:
            schedule = str(spec.trigger["schedule"])
            saved = self.store.load_timer(spec.name)
            if saved is not None:
                next_fire = parse_timestamp(saved[0])
                last = parse_timestamp(saved[1]) if saved[1] else None
            else:
                next_fire, last = ncrontab.next_fire(schedule, now), None
                self.store.save_timer(spec.name, format_timestamp(next_fire), None)
            timer = _Timer(spec, schedule, next_fire, last)
            self.timers.append(timer)
            if spec.trigger.get("runOnStartup"):
                self._fire(timer, now, past_due=False)

    def tick(self, now: datetime) -> None:
        for timer in self.timers:
            if timer.next_fire <= now and not timer.running:
                past_due = now - timer.next_fire > timedelta(seconds=1)
                self._fire(timer, now, past_due=past_due)

    def _fire(self, timer: _Timer, now: datetime, past_due: bool) -> None:
        scheduled = timer.next_fire
        status = {"Last": format_timestamp(timer.last_fire) if timer.last_fire else None,
                  "Next": format_timestamp(ncrontab.next_fire(timer.schedule, now)),
                  "LastUpdated": format_timestamp(now)}
        timer.last_fire = scheduled if scheduled <= now else now
        timer.next_fire = ncrontab.next_fire(timer.schedule, now)
        self.store.save_timer(timer.spec.name, format_timestamp(timer.next_fire), format_timestamp(timer.last_fire))
        payload = json.dumps({"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due})
        request = TimerRequestConverter.decode(meta.Datum(payload, "json"), trigger_metadata={})
        timer.running = True
        task = asyncio.create_task(self._run(timer, request))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, timer: _Timer, request: Any) -> None:
        try:
            await self.invoker(timer.spec, {str(timer.spec.trigger["name"]): request})
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("timer function '%s' failed", timer.spec.name)
        finally:
            timer.running = False
            self.notify()

    def busy(self) -> bool:
        return any(t.running for t in self.timers)

    def deadline(self) -> datetime | None:
        return min((t.next_fire for t in self.timers), default=None)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
