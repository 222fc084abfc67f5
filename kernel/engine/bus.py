"""Azure Service Bus emulation for the embedded engine, persisted in SQLite.

The engine delivers ``service_bus_queue_trigger`` / ``service_bus_topic_trigger`` functions from
this bus, so it reproduces the broker behaviour those functions observe: queues, topics that fan
out to subscriptions through SQL and correlation rules, peek-lock with lock expiry and renewal,
delivery counts (1 on first delivery), dead-lettering (explicit, ``MaxDeliveryCountExceeded``,
``TTLExpiredException``) readable from ``<entity>/$DeadLetterQueue``, scheduled messages and
time-to-live. Entity names are case-insensitive, as in Service Bus.

Usage contract:

- The connection must be opened with ``isolation_level=None``. Every public method runs inside a
  ``SAVEPOINT``, so it is atomic on its own and also nests in a transaction the caller holds on the
  same connection (the caller's commit or rollback then decides). The bus never commits.
- The bus is synchronous and not thread-safe: the engine calls it from its single asyncio thread.
- All times come from the injected ``clock``, which must return timezone-aware datetimes.

Not emulated: sessions (``session_id`` is carried but FIFO ignores it), duplicate detection,
auto-forwarding, rule actions, message size limits, per-entity default TTL.
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from typing import Any, NamedTuple

from kernel.engine import bus_rules
from kernel.engine.bus_rules import Routing, Rule
from kernel.engine.sqlfilter import CorrelationRule, SqlRule

__all__ = [
    "CorrelationRule",
    "EmbeddedBus",
    "LockLostError",
    "MessageNotFoundError",
    "OutgoingMessage",
    "ReceivedMessage",
    "SqlRule",
    "UnknownEntityError",
]

PropertyValue = str | int | float | bool | None

DEAD_LETTER_SUFFIX = "/$DeadLetterQueue"
MAX_LOCK_DURATION = timedelta(minutes=5)
MAX_DELIVERY_COUNT_EXCEEDED = "MaxDeliveryCountExceeded"
TTL_EXPIRED = "TTLExpiredException"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)
_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]*[A-Za-z0-9_])?")
_SUBSCRIPTION_NAME = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9_])?")
_DEFAULT_RULES: tuple[Rule, ...] = (SqlRule("$Default", "1=1"),)


class UnknownEntityError(LookupError):
    """A send or receive on an entity that was not declared (or cannot be used that way)."""


class LockLostError(RuntimeError):
    """Settling with a lock token that expired or that the bus does not hold (already settled)."""


class MessageNotFoundError(LookupError):
    """``cancel_scheduled`` for a sequence number that is not (or no longer) scheduled."""


@dataclass(frozen=True)
class OutgoingMessage:
    """A message to send; ``message_id`` is generated (uuid4 hex) when not given."""

    body: bytes
    message_id: str | None = None
    content_type: str | None = None
    correlation_id: str | None = None
    session_id: str | None = None
    subject: str | None = None
    reply_to: str | None = None
    to: str | None = None
    application_properties: dict[str, PropertyValue] = field(default_factory=dict)
    scheduled_enqueue_time: datetime | None = None
    time_to_live: timedelta | None = None


@dataclass(frozen=True)
class ReceivedMessage:
    """A delivered (or peeked) message, with the broker-set properties a receiver sees.

    ``lock_token`` and ``locked_until`` are ``None`` for peeked messages. Dead-letter reason and
    description are also in ``application_properties`` (``DeadLetterReason``,
    ``DeadLetterErrorDescription``), where Service Bus stores them. ``dead_letter_source`` is only
    set by Service Bus for messages auto-forwarded out of a dead-letter queue, which this bus does
    not do, so it stays ``None``.
    """

    entity_path: str
    sequence_number: int
    lock_token: str | None
    locked_until: datetime | None
    delivery_count: int
    enqueued_time: datetime
    message_id: str
    body: bytes
    content_type: str | None
    correlation_id: str | None
    session_id: str | None
    subject: str | None
    reply_to: str | None
    to: str | None
    application_properties: dict[str, PropertyValue]
    scheduled_enqueue_time: datetime | None
    expires_at: datetime | None
    dead_letter_reason: str | None = None
    dead_letter_error_description: str | None = None
    dead_letter_source: str | None = None


class _Entity(NamedTuple):
    key: str
    path: str
    kind: str  # "queue" | "topic" | "subscription"
    topic_key: str | None
    max_delivery_count: int
    lock_duration_us: int
    dead_letter_on_expiration: bool
    #: A digest of the subscription's rules (``rules`` column, JSON), None for queues and topics:
    #: reading an entity reads this, not the rules, which with ten thousand agents are 600 KB.
    rules_tag: str | None


class _Row(NamedTuple):
    id: int
    entity_key: str
    dead_lettered: int
    sequence_number: int
    message_id: str
    body: bytes
    content_type: str | None
    correlation_id: str | None
    session_id: str | None
    subject: str | None
    reply_to: str | None
    to_address: str | None
    application_properties: str
    scheduled_us: int | None
    enqueued_us: int
    ttl_us: int | None
    expires_us: int | None
    delivery_count: int
    lock_token: str | None
    locked_until_us: int | None
    dead_letter_reason: str | None
    dead_letter_description: str | None


_ENTITY_COLUMNS = ", ".join(_Entity._fields)
_ROW_COLUMNS = ", ".join(_Row._fields)
# Everything but the id: dead-lettering copies a message into a new row so the dead-letter queue
# keeps arrival order.
_COPY_COLUMNS = ", ".join(_Row._fields[1:])

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS bus_entities (
        key TEXT PRIMARY KEY,
        path TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('queue', 'topic', 'subscription')),
        topic_key TEXT,
        max_delivery_count INTEGER NOT NULL,
        lock_duration_us INTEGER NOT NULL,
        dead_letter_on_expiration INTEGER NOT NULL,
        rules TEXT,
        next_sequence INTEGER NOT NULL DEFAULT 1,
        rules_tag TEXT,
        routing TEXT
    )""",
    *bus_rules.SCHEMA,
    "CREATE INDEX IF NOT EXISTS bus_entities_topic ON bus_entities (topic_key) WHERE topic_key IS NOT NULL",
    """CREATE TABLE IF NOT EXISTS bus_messages (
        id INTEGER PRIMARY KEY,
        entity_key TEXT NOT NULL,
        dead_lettered INTEGER NOT NULL DEFAULT 0,
        sequence_number INTEGER NOT NULL,
        message_id TEXT NOT NULL,
        body BLOB NOT NULL,
        content_type TEXT,
        correlation_id TEXT,
        session_id TEXT,
        subject TEXT,
        reply_to TEXT,
        to_address TEXT,
        application_properties TEXT NOT NULL,
        scheduled_us INTEGER,
        enqueued_us INTEGER NOT NULL,
        ttl_us INTEGER,
        expires_us INTEGER,
        delivery_count INTEGER NOT NULL DEFAULT 0,
        lock_token TEXT,
        locked_until_us INTEGER,
        dead_letter_reason TEXT,
        dead_letter_description TEXT
    )""",
    # receive: the next unlocked messages of one entity/sub-queue in order.
    """CREATE INDEX IF NOT EXISTS bus_messages_ready
        ON bus_messages (entity_key, dead_lettered, id) WHERE lock_token IS NULL""",
    # counts, the earliest scheduled message of an entity, cancelling a scheduled message.
    """CREATE INDEX IF NOT EXISTS bus_messages_entity ON bus_messages (entity_key, dead_lettered, enqueued_us)""",
    # time-to-live sweep per entity.
    """CREATE INDEX IF NOT EXISTS bus_messages_expiry ON bus_messages (entity_key, expires_us)
        WHERE expires_us IS NOT NULL AND lock_token IS NULL AND dead_lettered = 0""",
    # settling by lock token. Partial, so the planner never picks it for "lock_token IS NULL".
    """CREATE UNIQUE INDEX IF NOT EXISTS bus_messages_lock_token
        ON bus_messages (lock_token) WHERE lock_token IS NOT NULL""",
    # lock expiry sweep.
    """CREATE INDEX IF NOT EXISTS bus_messages_locks
        ON bus_messages (locked_until_us) WHERE lock_token IS NOT NULL""",
)


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


def _to_us(moment: datetime, what: str) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"{what} must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return (moment - _EPOCH) // _MICROSECOND


def _from_us(micros: int | None) -> datetime | None:
    return None if micros is None else _EPOCH + timedelta(microseconds=micros)


def _check_properties(properties: Mapping[str, Any], what: str) -> dict[str, PropertyValue]:
    checked: dict[str, PropertyValue] = {}
    for key, value in properties.items():
        if not isinstance(key, str):
            raise TypeError(f"{what} keys must be strings, got {key!r}")
        if value is not None and not isinstance(value, (str, int, float, bool)):
            raise TypeError(f"{what}[{key!r}] must be str, int, float, bool or None, got {type(value).__name__}")
        checked[key] = value
    return checked


def _prepare(message: OutgoingMessage) -> OutgoingMessage:
    """Validate a message and fill in what the sender left to the broker."""
    if not isinstance(message, OutgoingMessage):
        raise TypeError(f"send() takes OutgoingMessage objects, got {type(message).__name__}")
    if not isinstance(message.body, (bytes, bytearray, memoryview)):
        raise TypeError(f"message body must be bytes, got {type(message.body).__name__}")
    if message.time_to_live is not None and message.time_to_live <= timedelta(0):
        raise ValueError(f"time_to_live must be positive, got {message.time_to_live}")
    if message.scheduled_enqueue_time is not None:
        _to_us(message.scheduled_enqueue_time, "scheduled_enqueue_time")
    return replace(
        message,
        body=bytes(message.body),
        message_id=message.message_id or uuid.uuid4().hex,
        application_properties=_check_properties(message.application_properties, "application_properties"),
    )


def _message_from_row(row: _Row) -> OutgoingMessage:
    """The message as a topic's rules see it when a scheduled message reaches its time."""
    return OutgoingMessage(
        body=row.body,
        message_id=row.message_id,
        content_type=row.content_type,
        correlation_id=row.correlation_id,
        session_id=row.session_id,
        subject=row.subject,
        reply_to=row.reply_to,
        to=row.to_address,
        application_properties=json.loads(row.application_properties),
        scheduled_enqueue_time=_from_us(row.scheduled_us),
        time_to_live=None if row.ttl_us is None else timedelta(microseconds=row.ttl_us),
    )


class EmbeddedBus:
    """Queues, topics and subscriptions with Service Bus peek-lock semantics, stored in SQLite."""

    def __init__(self, conn: sqlite3.Connection, *, clock: Callable[[], datetime] = _utc_now) -> None:
        if conn.isolation_level is not None:
            raise ValueError(
                "EmbeddedBus needs a connection opened with isolation_level=None: it manages its own "
                "SAVEPOINTs and must nest inside transactions the caller begins explicitly"
            )
        self._conn = conn
        self._clock = clock
        # subscription key -> (rules_tag, its rules compiled); replaced when the tag changes
        self._routings: dict[str, tuple[str | None, Routing]] = {}
        # entity key -> how many times its messages changed through this object (see change_count).
        self._changes: dict[str, int] = {}
        with self._atomic():
            for statement in _SCHEMA:
                self._conn.execute(statement)
            self._upgrade_rules()

    # ------------------------------------------------------------------------------------------
    # Declarations
    # ------------------------------------------------------------------------------------------

    def declare_queue(
        self,
        name: str,
        *,
        max_delivery_count: int = 10,
        lock_duration: timedelta = timedelta(seconds=60),
        dead_letter_on_expiration: bool = True,
    ) -> None:
        """Create the queue, or update its settings when it exists (messages are kept)."""
        _check_name(name, _NAME, "queue", 260)
        settings = _settings(max_delivery_count, lock_duration)
        with self._atomic():
            self._upsert(_Entity(name.lower(), name, "queue", None, *settings, dead_letter_on_expiration, None), None)

    def declare_topic(self, name: str) -> None:
        """Create the topic when it does not exist."""
        _check_name(name, _NAME, "topic", 260)
        with self._atomic():
            self._declare_topic(name)

    def declare_subscription(
        self,
        topic: str,
        name: str,
        *,
        rules: Sequence[Rule] | None = None,
        max_delivery_count: int = 10,
        lock_duration: timedelta = timedelta(seconds=60),
        dead_letter_on_expiration: bool = True,
    ) -> None:
        """Create or update a subscription (declaring its topic); its rules replace any previous ones.

        No rules means the ``$Default`` TrueFilter rule Service Bus creates with a subscription. A
        message is copied to the subscription when any rule matches.
        """
        _check_name(topic, _NAME, "topic", 260)
        _check_name(name, _SUBSCRIPTION_NAME, "subscription", 50)
        settings = _settings(max_delivery_count, lock_duration)
        chosen = tuple(rules) if rules else _DEFAULT_RULES
        rules_text = bus_rules.rules_json(chosen)
        tag = bus_rules.rules_tag(rules_text)
        names = [rule.name.lower() for rule in chosen]
        if len(set(names)) != len(names):
            raise ValueError(f"subscription {topic}/{name} has two rules with the same name: {[r.name for r in chosen]}")
        with self._atomic():
            parent = self._declare_topic(topic)
            key = f"{parent.key}/subscriptions/{name.lower()}"
            path = f"{parent.path}/Subscriptions/{name}"
            indexed = self._query("SELECT 1 FROM bus_entities WHERE key = ? AND rules_tag = ? AND routing IS NOT NULL",
                                  (key, tag))
            self._upsert(_Entity(key, path, "subscription", parent.key, *settings, dead_letter_on_expiration, tag),
                         rules_text)
            # New rules are checked (a bad one rolls the savepoint back) and indexed; the same rules
            # declared again (every start) were checked when first declared and keep their index.
            if not indexed:
                for rule in chosen:
                    if isinstance(rule, SqlRule):
                        rule.check()
                self._conn.execute("UPDATE bus_entities SET routing = ? WHERE key = ?",
                                   (bus_rules.index(self._conn, key, chosen), key))

    def entities(self) -> dict[str, Any]:
        """Declared queues, topics and subscriptions with their settings and rules, for diagnostics."""
        with self._atomic():
            rows = [
                _Entity._make(row)
                for row in self._query(f"SELECT {_ENTITY_COLUMNS} FROM bus_entities ORDER BY key")
            ]
        queues: dict[str, Any] = {}
        topics: dict[str, Any] = {}
        for entity in rows:
            if entity.kind == "queue":
                queues[entity.path] = _describe(entity)
            elif entity.kind == "topic":
                topics[entity.path] = {"subscriptions": {}}
        by_key = {entity.key: entity for entity in rows}
        for entity in rows:
            if entity.kind == "subscription" and entity.topic_key is not None:
                topic = by_key[entity.topic_key]
                described = {**_describe(entity), "path": entity.path,
                             "rules": list(bus_rules.rules_from_json(self._rules_text(entity.key)))}
                topics[topic.path]["subscriptions"][entity.path.rsplit("/", 1)[1]] = described
        return {"queues": queues, "topics": topics}

    # ------------------------------------------------------------------------------------------
    # Sending
    # ------------------------------------------------------------------------------------------

    def send(self, entity: str, messages: OutgoingMessage | Sequence[OutgoingMessage]) -> list[int]:
        """Send to a queue or topic; returns the sequence numbers the broker assigned.

        A topic copies each message to every subscription with a matching rule (a message no
        subscription wants is dropped, as in Service Bus). A scheduled message stays with the
        topic until its time and is filtered then, against the subscriptions that exist then.
        """
        batch = [messages] if isinstance(messages, OutgoingMessage) else list(messages)
        prepared = [_prepare(message) for message in batch]
        with self._atomic():
            now = self._now_us()
            target = self._entity(entity)
            if target is None or target.kind == "subscription":
                raise self._unknown(entity, "queue or topic to send to")
            first = self._allocate_sequence_numbers(target.key, len(prepared))
            subscriptions = self._subscriptions(target.key) if target.kind == "topic" else []
            for offset, message in enumerate(prepared):
                scheduled = message.scheduled_enqueue_time
                enqueued = max(now, _to_us(scheduled, "scheduled_enqueue_time")) if scheduled else now
                if target.kind == "queue" or enqueued > now:
                    self._insert([target.key], first + offset, message, enqueued)
                else:
                    self._fan_out(subscriptions, first + offset, message, enqueued)
            return list(range(first, first + len(prepared)))

    def cancel_scheduled(self, entity: str, sequence_number: int) -> None:
        """Cancel a scheduled message that has not reached its enqueue time yet."""
        with self._atomic():
            now = self._now_us()
            target = self._entity(entity)
            if target is None or target.kind == "subscription":
                raise self._unknown(entity, "queue or topic")
            cursor = self._conn.execute(
                "DELETE FROM bus_messages WHERE entity_key = ? AND sequence_number = ? AND dead_lettered = 0"
                " AND lock_token IS NULL AND enqueued_us > ?",
                (target.key, sequence_number, now),
            )
            self._touch([target.key])
            if cursor.rowcount == 0:
                raise MessageNotFoundError(
                    f"no scheduled message with sequence number {sequence_number} on {target.path} "
                    "(never sent, already cancelled, or its enqueue time has passed)"
                )

    # ------------------------------------------------------------------------------------------
    # Receiving and settling
    # ------------------------------------------------------------------------------------------

    def receive(self, path: str, *, max_count: int = 1) -> list[ReceivedMessage]:
        """Peek-lock up to ``max_count`` visible messages in sequence order.

        ``path`` is a queue, ``topic/Subscriptions/name``, or either with ``/$DeadLetterQueue``.
        Each delivery increments the delivery count and locks the message for the entity's lock
        duration; settle it with :meth:`complete`, :meth:`abandon` or :meth:`dead_letter`.
        """
        if max_count < 1:
            raise ValueError(f"max_count must be at least 1, got {max_count}")
        with self._atomic():
            now = self._now_us()
            entity, dead_lettered = self._receivable(path)
            self._catch_up(entity, now)
            rows = self._ready_rows(entity.key, dead_lettered, now, max_count)
            locked_until = now + entity.lock_duration_us
            locked = [row._replace(lock_token=str(uuid.uuid4()), locked_until_us=locked_until,
                                   delivery_count=row.delivery_count + 1) for row in rows]
            self._conn.executemany(
                "UPDATE bus_messages SET lock_token = ?, locked_until_us = ?, delivery_count = ? WHERE id = ?",
                [(row.lock_token, row.locked_until_us, row.delivery_count, row.id) for row in locked],
            )
            if locked:
                self._touch([entity.key])
            return [_received(entity, row) for row in locked]

    def complete(self, lock_token: str) -> None:
        """Settle a message as processed: it leaves the bus."""
        with self._atomic():
            row = self._locked(lock_token)
            self._conn.execute("DELETE FROM bus_messages WHERE id = ?", (row.id,))
            self._touch([row.entity_key])

    def abandon(self, lock_token: str, *, properties_to_modify: Mapping[str, PropertyValue] | None = None) -> None:
        """Release the lock for redelivery; a message whose deliveries are used up is dead-lettered."""
        with self._atomic():
            row = self._locked(lock_token)
            self._touch([row.entity_key])
            if properties_to_modify:
                properties = json.loads(row.application_properties)
                properties.update(_check_properties(properties_to_modify, "properties_to_modify"))
                self._conn.execute(
                    "UPDATE bus_messages SET application_properties = ? WHERE id = ?",
                    (json.dumps(properties, separators=(",", ":")), row.id),
                )
            entity = self._entity_by_key(row.entity_key)
            if not row.dead_lettered and row.delivery_count >= entity.max_delivery_count:
                self._dead_letter(row.id, *_max_delivery_reason(entity))
            else:
                self._unlock([row.id])

    def dead_letter(self, lock_token: str, *, reason: str, description: str | None = None) -> None:
        """Move a locked message to its entity's dead-letter queue with a reason and description."""
        with self._atomic():
            row = self._locked(lock_token)
            if row.dead_lettered:
                raise ValueError("the message is already in the dead-letter queue; complete it to remove it")
            self._dead_letter(row.id, reason, description)

    def renew_lock(self, lock_token: str) -> datetime:
        """Extend a held lock by the entity's lock duration from now; returns the new expiry."""
        with self._atomic():
            row = self._locked(lock_token)
            self._touch([row.entity_key])
            locked_until = self._now_us() + self._entity_by_key(row.entity_key).lock_duration_us
            self._conn.execute("UPDATE bus_messages SET locked_until_us = ? WHERE id = ?", (locked_until, row.id))
            return _EPOCH + timedelta(microseconds=locked_until)

    def release_expired_locks(self) -> int:
        """Make messages whose lock expired visible again; returns how many locks were released.

        An expired lock counts as a delivery attempt, as in Service Bus: the delivery count stays
        incremented and a message that used up its deliveries is dead-lettered.
        """
        with self._atomic():
            return self._release_locks(self._now_us(), None)

    def release_all_locks(self) -> int:
        """Release every lock, expired or not (a restarted host: their holder is gone); counted
        as delivery attempts like expired locks."""
        with self._atomic():
            return self._release_locks(2**62, None)

    # ------------------------------------------------------------------------------------------
    # Inspection
    # ------------------------------------------------------------------------------------------

    def peek_dead_letters(self, path: str, *, max_count: int = 100) -> list[ReceivedMessage]:
        """Dead-lettered messages of a queue or subscription, oldest first, without locking them."""
        with self._atomic():
            now = self._now_us()
            entity, _ = self._receivable(path)
            self._catch_up(entity, now)
            rows = self._rows("WHERE entity_key = ? AND dead_lettered = 1 ORDER BY id LIMIT ?", (entity.key, max_count))
            return [_received(entity, row._replace(lock_token=None, locked_until_us=None)) for row in rows]

    def active_count(self, path: str) -> int:
        """Messages available or locked in a queue/subscription (scheduled ones not yet included)."""
        with self._atomic():
            now = self._now_us()
            entity, dead_lettered = self._receivable(path)
            self._catch_up(entity, now)
            return self._count(entity.key, dead_lettered, now)

    def dead_letter_count(self, path: str) -> int:
        """Messages in the dead-letter queue of a queue or subscription."""
        with self._atomic():
            now = self._now_us()
            entity, _ = self._receivable(path)
            self._catch_up(entity, now)
            return self._count(entity.key, True, now)

    def next_visible_at(self, path: str | None = None) -> datetime | None:
        """When something next changes without a send: a scheduled message or TTL falls due, or a lock expires.

        Due work is first brought up to date (as a receive would), so the answer is always in the
        future; ``None`` means nothing is pending and the host can sleep until the next send.
        With a path, only that queue/subscription (or its dead-letter queue) is considered.
        """
        with self._atomic():
            now = self._now_us()
            if path is None:
                entities = [_Entity._make(row) for row in self._query(f"SELECT {_ENTITY_COLUMNS} FROM bus_entities")]
                for entity in entities:
                    if entity.kind != "topic":
                        self._catch_up(entity, now)
                candidates = [
                    self._min("SELECT MIN(locked_until_us) FROM bus_messages WHERE lock_token IS NOT NULL", ()),
                    *(self._next_scheduled(entity.key, now) for entity in entities),
                    *(self._next_expiry(entity.key) for entity in entities),
                ]
            else:
                entity, dead_lettered = self._receivable(path)
                self._catch_up(entity, now)
                candidates = [self._min(
                    "SELECT MIN(locked_until_us) FROM bus_messages WHERE lock_token IS NOT NULL"
                    " AND entity_key = ? AND dead_lettered = ?",
                    (entity.key, int(dead_lettered)),
                )]
                if dead_lettered:
                    candidates.append(self._next_expiry(entity.key))
                else:
                    sources = [entity.key] if entity.topic_key is None else [entity.key, entity.topic_key]
                    candidates += [self._next_scheduled(key, now) for key in sources]
            pending = [moment for moment in candidates if moment is not None]
            return _from_us(min(pending)) if pending else None

    def now(self) -> datetime:
        """The bus clock's current time."""
        return self._clock()

    def change_count(self, path: str) -> int:
        """A number that grows whenever the messages of ``path`` change through this bus object.

        ``path`` is a queue or subscription (the dead-letter suffix is ignored); a subscription
        also counts changes to its topic's scheduled messages. Sends, locks, settlements, lock and
        TTL expiry and declarations all count. A receiver that found ``path`` drained can skip
        receiving until this number moves or :meth:`next_visible_at` falls due, instead of
        querying on every pass. Changes rolled back still count (a spurious look is harmless);
        changes made by another object or process on the same database do not.
        """
        key = path.lower()
        if key.endswith(DEAD_LETTER_SUFFIX.lower()):
            key = key[: -len(DEAD_LETTER_SUFFIX)]
        count = self._changes.get(key, 0)
        topic, found, _ = key.partition("/subscriptions/")
        return count + self._changes.get(topic, 0) if found else count

    # ------------------------------------------------------------------------------------------
    # Internals: transactions, entities
    # ------------------------------------------------------------------------------------------

    def _touch(self, keys: Iterable[str]) -> None:
        for key in keys:
            self._changes[key] = self._changes.get(key, 0) + 1

    @contextmanager
    def _atomic(self) -> Iterator[None]:
        """A savepoint: atomic alone, and nested when the caller already holds a transaction."""
        self._conn.execute("SAVEPOINT embedded_bus")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK TO embedded_bus")
            self._conn.execute("RELEASE embedded_bus")
            raise
        self._conn.execute("RELEASE embedded_bus")

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a statement and fetch all rows as tuples, whatever row factory the caller's connection uses.

        Fetching everything also finishes the statement, so the savepoint can be released.
        """
        cursor = self._conn.cursor()
        cursor.row_factory = None
        return cursor.execute(sql, params).fetchall()

    def _now_us(self) -> int:
        return _to_us(self._clock(), "the bus clock")

    def _entity(self, path: str) -> _Entity | None:
        return self._entity_row("WHERE key = ?", (path.lower(),))

    def _entity_by_key(self, key: str) -> _Entity:
        entity = self._entity_row("WHERE key = ?", (key,))
        if entity is None:
            raise UnknownEntityError(f"entity {key!r} holds messages but is not declared")
        return entity

    def _entity_row(self, where: str, params: tuple[Any, ...]) -> _Entity | None:
        rows = self._query(f"SELECT {_ENTITY_COLUMNS} FROM bus_entities {where}", params)
        return _Entity._make(rows[0]) if rows else None

    def _receivable(self, path: str) -> tuple[_Entity, bool]:
        """Resolve a queue/subscription path, possibly with the dead-letter suffix."""
        dead_lettered = path.lower().endswith(DEAD_LETTER_SUFFIX.lower())
        base = path[: -len(DEAD_LETTER_SUFFIX)] if dead_lettered else path
        entity = self._entity(base)
        if entity is None or entity.kind == "topic":
            raise self._unknown(path, "queue or subscription to receive from")
        return entity, dead_lettered

    def _unknown(self, path: str, wanted: str) -> UnknownEntityError:
        entities = [_Entity._make(row) for row in self._query(f"SELECT {_ENTITY_COLUMNS} FROM bus_entities ORDER BY key")]
        def listed(kind: str) -> str:
            return ", ".join(e.path for e in entities if e.kind == kind) or "none"
        hint = ""
        found = next((e for e in entities if e.key == path.lower()), None)
        if found is not None and found.kind == "topic":
            hint = f"; {found.path!r} is a topic: receive from one of its subscriptions ({found.path}/Subscriptions/<name>)"
        elif found is not None:
            hint = f"; {found.path!r} is a subscription: send to its topic"
        return UnknownEntityError(
            f"no {wanted} named {path!r}{hint}. Declared queues: {listed('queue')}; topics: {listed('topic')};"
            f" subscriptions: {listed('subscription')}"
        )

    def _upsert(self, entity: _Entity, rules: str | None) -> None:
        self._touch([entity.key])
        existing = self._entity_row("WHERE key = ?", (entity.key,))
        if existing is not None and existing.kind != entity.kind:
            raise ValueError(f"cannot declare {entity.kind} {entity.path!r}: {existing.path!r} is already a {existing.kind}")
        self._conn.execute(
            f"INSERT INTO bus_entities ({_ENTITY_COLUMNS}, rules) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (key) DO UPDATE SET max_delivery_count = excluded.max_delivery_count,"
            " lock_duration_us = excluded.lock_duration_us,"
            " dead_letter_on_expiration = excluded.dead_letter_on_expiration, rules = excluded.rules,"
            " rules_tag = excluded.rules_tag",
            (*entity, rules),
        )

    def _upgrade_rules(self) -> None:
        """Give every subscription stored by an earlier version what this one keeps beside its rules:
        their tag and their label index (one-time upgrades; rules declared now get both at once)."""
        columns = {row[1] for row in self._query("PRAGMA table_info(bus_entities)")}
        for column in ("rules_tag", "routing"):
            if column not in columns:
                self._conn.execute(f"ALTER TABLE bus_entities ADD COLUMN {column} TEXT")
        for key, rules, tag, routing in self._query(
                "SELECT key, rules, rules_tag, routing FROM bus_entities"
                " WHERE rules IS NOT NULL AND (rules_tag IS NULL OR routing IS NULL)"):
            if routing is None:
                routing = bus_rules.index(self._conn, key, bus_rules.rules_from_json(rules))
            self._conn.execute("UPDATE bus_entities SET rules_tag = ?, routing = ? WHERE key = ?",
                               (tag or bus_rules.rules_tag(rules), routing, key))

    def _declare_topic(self, name: str) -> _Entity:
        existing = self._entity(name)
        if existing is not None and existing.kind == "topic":
            return existing
        topic = _Entity(name.lower(), name, "topic", None, 0, 0, False, None)
        self._upsert(topic, None)
        return topic

    def _rules_text(self, key: str) -> str:
        rows = self._query("SELECT rules FROM bus_entities WHERE key = ?", (key,))
        return (rows[0][0] if rows else None) or "[]"

    def _routing(self, key: str, tag: str | None) -> Routing:
        """The subscription's rules, compiled once per version of them (the tag says which)."""
        known = self._routings.get(key)
        if known is None or known[0] != tag:
            rows = self._query("SELECT routing FROM bus_entities WHERE key = ?", (key,))
            known = self._routings[key] = (tag, Routing.compiled(key, rows[0][0]))
        return known[1]

    def _subscriptions(self, topic_key: str) -> list[tuple[str, Routing]]:
        rows = self._query("SELECT key, rules_tag FROM bus_entities WHERE topic_key = ? ORDER BY key", (topic_key,))
        return [(key, self._routing(key, tag)) for key, tag in rows]

    def _allocate_sequence_numbers(self, key: str, count: int) -> int:
        ((next_sequence,),) = self._query(
            "UPDATE bus_entities SET next_sequence = next_sequence + ? WHERE key = ? RETURNING next_sequence",
            (count, key),
        )
        return int(next_sequence) - count

    # ------------------------------------------------------------------------------------------
    # Internals: messages
    # ------------------------------------------------------------------------------------------

    def _rows(self, where: str, params: tuple[Any, ...]) -> list[_Row]:
        return [_Row._make(row) for row in self._query(f"SELECT {_ROW_COLUMNS} FROM bus_messages {where}", params)]

    def _ready_rows(self, key: str, dead_lettered: bool, now: int, limit: int) -> list[_Row]:
        """Unlocked messages whose time has come, in order; walks the index instead of sorting."""
        return self._rows(
            "INDEXED BY bus_messages_ready WHERE entity_key = ? AND dead_lettered = ? AND lock_token IS NULL"
            " AND enqueued_us <= ? ORDER BY id LIMIT ?",
            (key, int(dead_lettered), now, limit),
        )

    def _min(self, sql: str, params: tuple[Any, ...]) -> int | None:
        ((value,),) = self._query(sql, params)
        return None if value is None else int(value)

    def _count(self, key: str, dead_lettered: bool, now: int) -> int:
        ((count,),) = self._query(
            "SELECT COUNT(*) FROM bus_messages WHERE entity_key = ? AND dead_lettered = ? AND enqueued_us <= ?",
            (key, int(dead_lettered), now),
        )
        return int(count)

    def _next_scheduled(self, key: str, now: int) -> int | None:
        return self._min(
            "SELECT MIN(enqueued_us) FROM bus_messages INDEXED BY bus_messages_entity WHERE entity_key = ?"
            " AND dead_lettered = 0 AND enqueued_us > ? AND lock_token IS NULL",
            (key, now),
        )

    def _next_expiry(self, key: str) -> int | None:
        return self._min(
            "SELECT MIN(expires_us) FROM bus_messages WHERE entity_key = ? AND expires_us IS NOT NULL"
            " AND lock_token IS NULL AND dead_lettered = 0",
            (key,),
        )

    def _insert(self, keys: Sequence[str], sequence_number: int, message: OutgoingMessage, enqueued: int) -> None:
        scheduled = message.scheduled_enqueue_time
        ttl = None if message.time_to_live is None else message.time_to_live // _MICROSECOND
        values = (
            sequence_number, message.message_id, message.body, message.content_type, message.correlation_id,
            message.session_id, message.subject, message.reply_to, message.to,
            json.dumps(message.application_properties, separators=(",", ":")),
            None if scheduled is None else _to_us(scheduled, "scheduled_enqueue_time"),
            enqueued, ttl, None if ttl is None else enqueued + ttl,
        )
        self._conn.executemany(
            "INSERT INTO bus_messages (entity_key, sequence_number, message_id, body, content_type,"
            " correlation_id, session_id, subject, reply_to, to_address, application_properties,"
            " scheduled_us, enqueued_us, ttl_us, expires_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [(key, *values) for key in keys],
        )
        self._touch(keys)

    def _fan_out(
        self, subscriptions: list[tuple[str, Routing]], sequence_number: int, message: OutgoingMessage,
        enqueued: int,
    ) -> None:
        matching = [key for key, routing in subscriptions if routing.matches(self._conn, message)]
        self._insert(matching, sequence_number, message, enqueued)

    def _locked(self, lock_token: str) -> _Row:
        rows = self._rows("WHERE lock_token = ?", (lock_token,))
        if not rows:
            raise LockLostError(
                f"lock {lock_token!r} is not held: the message was already settled, or its lock expired "
                "and was released"
            )
        now = self._now_us()
        locked_until = rows[0].locked_until_us
        if locked_until is not None and locked_until <= now:
            expired_at = _EPOCH + timedelta(microseconds=locked_until)
            raise LockLostError(f"lock {lock_token!r} expired at {expired_at.isoformat()}")
        return rows[0]

    def _unlock(self, ids: Sequence[int]) -> None:
        self._conn.executemany(
            "UPDATE bus_messages SET lock_token = NULL, locked_until_us = NULL WHERE id = ?", [(i,) for i in ids]
        )

    def _dead_letter(self, row_id: int, reason: str, description: str | None) -> None:
        """Move a message to the dead-letter queue, recording why where Service Bus does."""
        ((properties_text, key),) = self._query(
            "SELECT application_properties, entity_key FROM bus_messages WHERE id = ?", (row_id,))
        self._touch([key])
        properties = json.loads(properties_text)
        properties["DeadLetterReason"] = reason
        if description is not None:
            properties["DeadLetterErrorDescription"] = description
        self._conn.execute(
            f"INSERT INTO bus_messages ({_COPY_COLUMNS}) SELECT entity_key, 1, sequence_number, message_id, body,"
            " content_type, correlation_id, session_id, subject, reply_to, to_address, ?, scheduled_us,"
            " enqueued_us, ttl_us, expires_us, delivery_count, NULL, NULL, ?, ? FROM bus_messages WHERE id = ?",
            (json.dumps(properties, separators=(",", ":")), reason, description, row_id),
        )
        self._conn.execute("DELETE FROM bus_messages WHERE id = ?", (row_id,))

    def _catch_up(self, entity: _Entity, now: int) -> None:
        """Apply what the passage of time did to an entity: due topic messages, lock and TTL expiry."""
        if entity.topic_key is not None:
            self._promote_scheduled(entity.topic_key, now)
        self._release_locks(now, entity.key)
        self._expire(entity, now)

    def _promote_scheduled(self, topic_key: str, now: int) -> None:
        rows = self._ready_rows(topic_key, False, now, -1)
        if not rows:
            return
        subscriptions = self._subscriptions(topic_key)
        for row in rows:
            self._fan_out(subscriptions, row.sequence_number, _message_from_row(row), row.enqueued_us)
        self._conn.executemany("DELETE FROM bus_messages WHERE id = ?", [(row.id,) for row in rows])
        self._touch([topic_key])

    def _release_locks(self, now: int, entity_key: str | None) -> int:
        sql = (
            "SELECT id, dead_lettered, delivery_count, entity_key FROM bus_messages INDEXED BY bus_messages_locks"
            " WHERE lock_token IS NOT NULL AND locked_until_us <= ?"
        )
        params: tuple[Any, ...] = (now,)
        if entity_key is not None:
            sql += " AND entity_key = ?"
            params += (entity_key,)
        expired = self._query(sql + " ORDER BY id", params)
        entities = {key: self._entity_by_key(key) for key in {row[3] for row in expired}}
        self._touch(entities)
        for row_id, dead_lettered, delivery_count, key in expired:
            if not dead_lettered and delivery_count >= entities[key].max_delivery_count:
                self._dead_letter(row_id, *_max_delivery_reason(entities[key]))
            else:
                self._unlock([row_id])
        return len(expired)

    def _expire(self, entity: _Entity, now: int) -> None:
        ids = [row[0] for row in self._query(
            "SELECT id FROM bus_messages WHERE entity_key = ? AND expires_us <= ? AND expires_us IS NOT NULL"
            " AND lock_token IS NULL AND dead_lettered = 0 ORDER BY id",
            (entity.key, now),
        )]
        if ids:
            self._touch([entity.key])
        for row_id in ids:
            if entity.dead_letter_on_expiration:
                self._dead_letter(row_id, TTL_EXPIRED, "The message expired and was dead lettered.")
            else:
                self._conn.execute("DELETE FROM bus_messages WHERE id = ?", (row_id,))


def _check_name(name: str, pattern: re.Pattern[str], kind: str, max_length: int) -> None:
    if not isinstance(name, str) or not pattern.fullmatch(name) or len(name) > max_length:
        allowed_slash = "" if kind == "subscription" else ", '/'"
        raise ValueError(
            f"invalid {kind} name {name!r}: use letters, digits, '.', '-', '_'{allowed_slash}, starting"
            f" with a letter or digit, at most {max_length} characters"
        )
    if kind != "subscription" and "/subscriptions/" in f"/{name.lower()}/":
        raise ValueError(f"invalid {kind} name {name!r}: 'Subscriptions' is reserved as a path segment")


def _settings(max_delivery_count: int, lock_duration: timedelta) -> tuple[int, int]:
    if max_delivery_count < 1:
        raise ValueError(f"max_delivery_count must be at least 1, got {max_delivery_count}")
    if not timedelta(0) < lock_duration <= MAX_LOCK_DURATION:
        raise ValueError(f"lock_duration must be positive and at most {MAX_LOCK_DURATION}, got {lock_duration}")
    return max_delivery_count, lock_duration // _MICROSECOND


def _describe(entity: _Entity) -> dict[str, Any]:
    return {
        "max_delivery_count": entity.max_delivery_count,
        "lock_duration": timedelta(microseconds=entity.lock_duration_us),
        "dead_letter_on_expiration": bool(entity.dead_letter_on_expiration),
    }


def _max_delivery_reason(entity: _Entity) -> tuple[str, str]:
    return (
        MAX_DELIVERY_COUNT_EXCEEDED,
        f"Message could not be consumed after {entity.max_delivery_count} delivery attempts.",
    )


def _received(entity: _Entity, row: _Row) -> ReceivedMessage:
    return ReceivedMessage(
        entity_path=entity.path + (DEAD_LETTER_SUFFIX if row.dead_lettered else ""),
        sequence_number=row.sequence_number,
        lock_token=row.lock_token,
        locked_until=_from_us(row.locked_until_us),
        delivery_count=row.delivery_count,
        enqueued_time=_EPOCH + timedelta(microseconds=row.enqueued_us),
        message_id=row.message_id,
        body=bytes(row.body),
        content_type=row.content_type,
        correlation_id=row.correlation_id,
        session_id=row.session_id,
        subject=row.subject,
        reply_to=row.reply_to,
        to=row.to_address,
        application_properties=json.loads(row.application_properties),
        scheduled_enqueue_time=_from_us(row.scheduled_us),
        expires_at=_from_us(row.expires_us),
        dead_letter_reason=row.dead_letter_reason,
        dead_letter_error_description=row.dead_letter_description,
    )
