"""The embedded Service Bus: fan-out, peek-lock, delivery counts, dead-lettering, time, durability."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from kernel.engine.bus import (
    CorrelationRule,
    EmbeddedBus,
    LockLostError,
    MessageNotFoundError,
    OutgoingMessage,
    ReceivedMessage,
    SqlRule,
    UnknownEntityError,
)
from kernel.engine.sqlfilter import SqlFilterError

START = datetime(2030, 1, 1, tzinfo=timezone.utc)


class Clock:
    """A virtual clock the tests move by hand."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta) -> None:
        self.now += delta


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def conn() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    yield connection
    connection.close()


@pytest.fixture
def bus(conn: sqlite3.Connection, clock: Clock) -> EmbeddedBus:
    return EmbeddedBus(conn, clock=clock)


def msg(body: str, **kwargs: object) -> OutgoingMessage:
    return OutgoingMessage(body.encode(), **kwargs)  # type: ignore[arg-type]


def bodies(messages: list[ReceivedMessage]) -> list[str]:
    return [m.body.decode() for m in messages]


def drain(bus: EmbeddedBus, path: str) -> list[str]:
    received = bus.receive(path, max_count=100)
    for message in received:
        bus.complete(message.lock_token or "")
    return bodies(received)


# --- queues: FIFO and peek-lock --------------------------------------------------------------


def test_queue_is_fifo_with_increasing_sequence_numbers(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    assert bus.send("jobs", [msg("a"), msg("b")]) == [1, 2]
    assert bus.send("jobs", msg("c")) == [3]
    received = bus.receive("jobs", max_count=10)
    assert bodies(received) == ["a", "b", "c"]
    assert [m.sequence_number for m in received] == [1, 2, 3]
    assert all(m.delivery_count == 1 and m.entity_path == "jobs" for m in received)


def test_received_message_carries_properties_and_broker_fields(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs", lock_duration=timedelta(seconds=30))
    bus.send("jobs", msg("x", message_id="id-1", content_type="text/plain", correlation_id="c", session_id="s",
                         subject="greeting", reply_to="replies", to="you",
                         application_properties={"n": 1, "f": 1.5, "b": True, "s": "v", "none": None}))
    (received,) = bus.receive("jobs")
    assert (received.message_id, received.content_type, received.correlation_id, received.session_id) == (
        "id-1", "text/plain", "c", "s")
    assert (received.subject, received.reply_to, received.to) == ("greeting", "replies", "you")
    assert received.application_properties == {"n": 1, "f": 1.5, "b": True, "s": "v", "none": None}
    assert received.enqueued_time == START
    assert received.locked_until == START + timedelta(seconds=30)
    assert received.expires_at is None and received.scheduled_enqueue_time is None
    assert received.lock_token


def test_message_id_is_generated_when_missing(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", [msg("a"), msg("b")])
    first, second = bus.receive("jobs", max_count=2)
    assert len(first.message_id) == 32 and first.message_id != second.message_id


def test_locked_message_is_invisible_to_other_receivers(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", [msg("a"), msg("b")])
    assert bodies(bus.receive("jobs")) == ["a"]
    assert bodies(bus.receive("jobs")) == ["b"]
    assert bus.receive("jobs") == []
    assert bus.active_count("jobs") == 2  # locked messages are still active


def test_complete_removes_the_message_and_consumes_the_lock(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", msg("a"))
    (received,) = bus.receive("jobs")
    bus.complete(received.lock_token or "")
    assert bus.active_count("jobs") == 0
    with pytest.raises(LockLostError, match="not held"):
        bus.complete(received.lock_token or "")


def test_abandon_redelivers_with_incremented_delivery_count(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", [msg("a"), msg("b")])
    (first,) = bus.receive("jobs")
    bus.abandon(first.lock_token or "", properties_to_modify={"attempt": "retry"})
    (again,) = bus.receive("jobs")
    assert again.body == b"a" and again.delivery_count == 2
    assert again.application_properties == {"attempt": "retry"}
    assert again.lock_token != first.lock_token


def test_abandon_dead_letters_when_delivery_count_reaches_max(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs", max_delivery_count=3)
    bus.send("jobs", msg("poison"))
    for attempt in range(1, 4):
        (received,) = bus.receive("jobs")
        assert received.delivery_count == attempt
        bus.abandon(received.lock_token or "")
    assert bus.receive("jobs") == []
    (dead,) = bus.peek_dead_letters("jobs")
    assert dead.dead_letter_reason == "MaxDeliveryCountExceeded"
    assert dead.dead_letter_error_description == "Message could not be consumed after 3 delivery attempts."
    assert dead.application_properties["DeadLetterReason"] == "MaxDeliveryCountExceeded"
    assert dead.delivery_count == 3 and dead.lock_token is None
    assert dead.entity_path == "jobs/$DeadLetterQueue"
    assert (bus.active_count("jobs"), bus.dead_letter_count("jobs")) == (0, 1)


def test_explicit_dead_letter_is_received_from_the_dead_letter_queue(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", [msg("bad"), msg("worse")])
    for reason in ("Invalid", "Broken"):
        (received,) = bus.receive("jobs")
        bus.dead_letter(received.lock_token or "", reason=reason, description=f"{reason} payload")
    dead = bus.receive("jobs/$deadletterqueue", max_count=10)
    assert bodies(dead) == ["bad", "worse"]
    assert [(d.dead_letter_reason, d.dead_letter_error_description) for d in dead] == [
        ("Invalid", "Invalid payload"), ("Broken", "Broken payload")]
    assert dead[0].application_properties == {"DeadLetterReason": "Invalid", "DeadLetterErrorDescription": "Invalid payload"}
    assert dead[0].entity_path == "jobs/$DeadLetterQueue" and dead[0].delivery_count == 2
    with pytest.raises(ValueError, match="already in the dead-letter queue"):
        bus.dead_letter(dead[0].lock_token or "", reason="again")
    bus.abandon(dead[1].lock_token or "")  # a dead-lettered message is never dead-lettered again
    bus.complete(dead[0].lock_token or "")
    assert bus.dead_letter_count("jobs") == 1


def test_dead_letter_queue_keeps_arrival_order_not_sequence_order(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", [msg("first"), msg("second")])
    first, second = bus.receive("jobs", max_count=2)
    bus.dead_letter(second.lock_token or "", reason="r")
    bus.dead_letter(first.lock_token or "", reason="r")
    assert bodies(bus.peek_dead_letters("jobs")) == ["second", "first"]


# --- locks over time ---------------------------------------------------------------------------


def test_expired_lock_makes_the_message_visible_again(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs", lock_duration=timedelta(seconds=30))
    bus.send("jobs", msg("a"))
    (first,) = bus.receive("jobs")
    clock.advance(timedelta(seconds=29))
    assert bus.receive("jobs") == []
    clock.advance(timedelta(seconds=1))
    (again,) = bus.receive("jobs")
    assert again.delivery_count == 2 and again.locked_until == clock.now + timedelta(seconds=30)
    with pytest.raises(LockLostError):
        bus.complete(first.lock_token or "")
    bus.complete(again.lock_token or "")


def test_settling_after_lock_expiry_fails_even_before_release(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs", lock_duration=timedelta(seconds=30))
    bus.send("jobs", msg("a"))
    (received,) = bus.receive("jobs")
    clock.advance(timedelta(seconds=31))
    for settle in (bus.complete, bus.abandon, bus.renew_lock):
        with pytest.raises(LockLostError, match="expired"):
            settle(received.lock_token or "")


def test_release_expired_locks_counts_attempts_and_dead_letters_at_max(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs", max_delivery_count=2, lock_duration=timedelta(seconds=10))
    bus.send("jobs", [msg("a"), msg("b")])
    bus.receive("jobs", max_count=2)
    assert bus.release_expired_locks() == 0
    clock.advance(timedelta(seconds=10))
    assert bus.release_expired_locks() == 2
    assert [m.delivery_count for m in bus.receive("jobs", max_count=2)] == [2, 2]
    clock.advance(timedelta(seconds=10))
    assert bus.release_expired_locks() == 2
    assert bus.active_count("jobs") == 0
    assert [d.dead_letter_reason for d in bus.peek_dead_letters("jobs")] == ["MaxDeliveryCountExceeded"] * 2


def test_renew_lock_extends_from_now(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs", lock_duration=timedelta(seconds=30))
    bus.send("jobs", msg("a"))
    (received,) = bus.receive("jobs")
    clock.advance(timedelta(seconds=20))
    assert bus.renew_lock(received.lock_token or "") == clock.now + timedelta(seconds=30)
    clock.advance(timedelta(seconds=20))
    assert bus.receive("jobs") == []
    bus.complete(received.lock_token or "")


def test_next_visible_at_reports_lock_expiry(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs", lock_duration=timedelta(seconds=45))
    assert bus.next_visible_at() is None
    bus.send("jobs", msg("a"))
    assert bus.next_visible_at("jobs") is None  # visible now: nothing to wait for
    bus.receive("jobs")
    assert bus.next_visible_at() == START + timedelta(seconds=45)
    assert bus.next_visible_at("jobs") == START + timedelta(seconds=45)


# --- scheduled messages and time-to-live -------------------------------------------------------


def test_scheduled_message_is_invisible_until_its_time(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs")
    at = START + timedelta(minutes=5)
    bus.send("jobs", [msg("later", scheduled_enqueue_time=at), msg("now")])
    (now,) = bus.receive("jobs")
    assert now.body == b"now" and bus.active_count("jobs") == 1
    assert bus.next_visible_at("jobs") == START + timedelta(seconds=60)  # the lock on "now"
    bus.complete(now.lock_token or "")
    assert bus.next_visible_at("jobs") == at
    clock.advance(timedelta(minutes=4))
    assert bus.receive("jobs") == []
    assert bus.next_visible_at() == at
    clock.advance(timedelta(minutes=1))
    (later,) = bus.receive("jobs")
    assert later.body == b"later" and later.enqueued_time == at and later.scheduled_enqueue_time == at
    assert later.sequence_number == 1


def test_scheduled_time_in_the_past_enqueues_immediately(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", msg("a", scheduled_enqueue_time=START - timedelta(hours=1)))
    assert bodies(bus.receive("jobs")) == ["a"]


def test_cancel_scheduled(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs")
    bus.declare_topic("events")
    bus.declare_subscription("events", "all")
    at = START + timedelta(minutes=1)
    (queued,) = bus.send("jobs", msg("q", scheduled_enqueue_time=at))
    (published,) = bus.send("events", msg("t", scheduled_enqueue_time=at))
    (kept,) = bus.send("jobs", msg("kept", scheduled_enqueue_time=at))
    bus.cancel_scheduled("JOBS", queued)
    bus.cancel_scheduled("events", published)
    with pytest.raises(MessageNotFoundError, match="sequence number 1"):
        bus.cancel_scheduled("jobs", queued)
    clock.advance(timedelta(minutes=1))
    with pytest.raises(MessageNotFoundError):
        bus.cancel_scheduled("jobs", kept)  # already enqueued
    assert drain(bus, "jobs") == ["kept"]
    assert bus.receive("events/Subscriptions/all") == []


def test_scheduled_topic_message_is_filtered_when_it_falls_due(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_subscription("events", "early")
    bus.send("events", msg("later", scheduled_enqueue_time=START + timedelta(minutes=10)))
    bus.declare_subscription("events", "late")
    assert bus.next_visible_at("events/Subscriptions/late") == START + timedelta(minutes=10)
    clock.advance(timedelta(minutes=10))
    assert drain(bus, "events/Subscriptions/late") == ["later"]
    assert drain(bus, "events/Subscriptions/early") == ["later"]


def test_expired_message_is_dead_lettered_with_ttl_reason(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", [msg("short", time_to_live=timedelta(seconds=10)), msg("long", time_to_live=timedelta(hours=1))])
    clock.advance(timedelta(seconds=10))
    assert bodies(bus.receive("jobs")) == ["long"]
    (dead,) = bus.peek_dead_letters("jobs")
    assert dead.body == b"short" and dead.dead_letter_reason == "TTLExpiredException"
    assert dead.expires_at == START + timedelta(seconds=10) and dead.delivery_count == 0


def test_expired_message_is_dropped_when_dead_lettering_on_expiry_is_off(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs", dead_letter_on_expiration=False)
    bus.send("jobs", msg("short", time_to_live=timedelta(seconds=10)))
    assert bus.next_visible_at("jobs/$DeadLetterQueue") == START + timedelta(seconds=10)
    clock.advance(timedelta(seconds=10))
    assert (bus.active_count("jobs"), bus.dead_letter_count("jobs")) == (0, 0)


def test_locked_message_can_be_completed_after_its_ttl(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", msg("a", time_to_live=timedelta(seconds=5)))
    (received,) = bus.receive("jobs")
    clock.advance(timedelta(seconds=6))
    bus.complete(received.lock_token or "")
    assert bus.dead_letter_count("jobs") == 0


def test_ttl_of_scheduled_message_counts_from_its_enqueue_time(bus: EmbeddedBus, clock: Clock) -> None:
    bus.declare_queue("jobs")
    at = START + timedelta(minutes=5)
    bus.send("jobs", msg("a", scheduled_enqueue_time=at, time_to_live=timedelta(minutes=1)))
    clock.advance(timedelta(minutes=5, seconds=30))
    (received,) = bus.receive("jobs")
    assert received.expires_at == at + timedelta(minutes=1)


# --- topics, subscriptions and rules -----------------------------------------------------------


def test_topic_fans_out_through_sql_and_correlation_rules(bus: EmbeddedBus) -> None:
    bus.declare_subscription("orders", "all")
    bus.declare_subscription("orders", "urgent", rules=[SqlRule("urgent", "priority > 5 AND sys.Label LIKE 'order.%'")])
    bus.declare_subscription("orders", "eu", rules=[CorrelationRule("eu", application_properties={"region": "eu"})])
    bus.declare_subscription("orders", "cancel-or-refund", rules=[
        CorrelationRule("cancelled", subject="order.cancelled"),
        SqlRule("refunds", "EXISTS(refund)"),
    ])
    sequence_numbers = bus.send("orders", [
        msg("o1", subject="order.created", application_properties={"priority": 9, "region": "us"}),
        msg("o2", subject="order.cancelled", application_properties={"priority": 1, "region": "eu"}),
        msg("o3", subject="payment", application_properties={"refund": None}),
    ])
    assert sequence_numbers == [1, 2, 3]
    assert drain(bus, "orders/Subscriptions/all") == ["o1", "o2", "o3"]
    assert drain(bus, "orders/Subscriptions/urgent") == ["o1"]
    assert drain(bus, "orders/Subscriptions/eu") == ["o2"]
    assert drain(bus, "orders/Subscriptions/cancel-or-refund") == ["o2", "o3"]


def test_each_subscription_has_its_own_copy_and_lock(bus: EmbeddedBus) -> None:
    bus.declare_subscription("events", "a")
    bus.declare_subscription("events", "b")
    bus.send("events", msg("e"))
    (from_a,) = bus.receive("events/Subscriptions/a")
    (from_b,) = bus.receive("events/Subscriptions/b")
    assert from_a.sequence_number == from_b.sequence_number == 1
    assert from_a.entity_path == "events/Subscriptions/a"
    bus.complete(from_a.lock_token or "")
    bus.abandon(from_b.lock_token or "")
    assert (bus.active_count("events/Subscriptions/a"), bus.active_count("events/Subscriptions/b")) == (0, 1)


def test_message_no_subscription_wants_is_dropped_but_numbered(bus: EmbeddedBus) -> None:
    bus.declare_subscription("events", "picky", rules=[SqlRule("never", "1=0")])
    assert bus.send("events", [msg("a"), msg("b")]) == [1, 2]
    assert bus.active_count("events/Subscriptions/picky") == 0
    bus.declare_topic("empty")
    assert bus.send("empty", msg("c")) == [1]


def test_redeclaring_a_subscription_replaces_its_rules(bus: EmbeddedBus) -> None:
    bus.declare_subscription("events", "s", rules=[SqlRule("blue", "colour = 'blue'")])
    bus.send("events", [msg("blue", application_properties={"colour": "blue"}),
                        msg("red", application_properties={"colour": "red"})])
    bus.declare_subscription("events", "s", rules=[SqlRule("red", "colour = 'red'")])
    bus.send("events", [msg("blue2", application_properties={"colour": "blue"}),
                        msg("red2", application_properties={"colour": "red"})])
    assert drain(bus, "events/Subscriptions/s") == ["blue", "red2"]
    assert [r.name for r in bus.entities()["topics"]["events"]["subscriptions"]["s"]["rules"]] == ["red"]


def test_bad_sql_rule_is_refused_at_declare(bus: EmbeddedBus) -> None:
    with pytest.raises(SqlFilterError, match=r"expected '\)', found end of filter at column 17"):
        bus.declare_subscription("events", "s", rules=[SqlRule("bad", "(colour = 'blue'")])
    with pytest.raises(ValueError, match="same name"):
        bus.declare_subscription("events", "s", rules=[SqlRule("r", "1=1"), SqlRule("R", "1=0")])
    assert bus.entities() == {"queues": {}, "topics": {}}


def test_names_are_case_insensitive_and_keep_their_declared_spelling(bus: EmbeddedBus) -> None:
    bus.declare_queue("Jobs")
    bus.declare_queue("JOBS", max_delivery_count=4)  # the same queue: settings updated
    bus.declare_subscription("Events", "Audit")
    bus.send("jobs", msg("a"))
    bus.send("EVENTS", msg("b"))
    (job,) = bus.receive("jObS")
    (event,) = bus.receive("events/subscriptions/AUDIT")
    assert job.entity_path == "Jobs" and event.entity_path == "Events/Subscriptions/Audit"
    entities = bus.entities()
    assert entities["queues"] == {"Jobs": {"max_delivery_count": 4, "lock_duration": timedelta(seconds=60),
                                           "dead_letter_on_expiration": True}}
    audit = entities["topics"]["Events"]["subscriptions"]["Audit"]
    assert audit["path"] == "Events/Subscriptions/Audit" and audit["rules"] == [SqlRule("$Default", "1=1")]


def test_queue_and_topic_names_share_one_namespace(bus: EmbeddedBus) -> None:
    bus.declare_queue("things")
    with pytest.raises(ValueError, match="already a queue"):
        bus.declare_topic("Things")
    with pytest.raises(ValueError, match="invalid queue name"):
        bus.declare_queue("bad name")
    with pytest.raises(ValueError, match="lock_duration"):
        bus.declare_queue("slow", lock_duration=timedelta(minutes=6))


# --- errors ------------------------------------------------------------------------------------


def test_unknown_entities_are_named_with_what_is_declared(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    bus.declare_subscription("events", "audit")
    with pytest.raises(UnknownEntityError, match=r"'nope'.*queues: jobs; topics: events; subscriptions: events/Subscriptions/audit"):
        bus.send("nope", msg("a"))
    with pytest.raises(UnknownEntityError, match="'events' is a topic: receive from one of its subscriptions"):
        bus.receive("events")
    with pytest.raises(UnknownEntityError, match="is a subscription: send to its topic"):
        bus.send("events/Subscriptions/audit", msg("a"))
    with pytest.raises(UnknownEntityError, match="'events/Subscriptions/other'"):
        bus.receive("events/Subscriptions/other")
    with pytest.raises(UnknownEntityError, match="'gone/\\$DeadLetterQueue'"):
        bus.peek_dead_letters("gone/$DeadLetterQueue")


def test_invalid_messages_are_refused(bus: EmbeddedBus) -> None:
    bus.declare_queue("jobs")
    with pytest.raises(TypeError, match="bytes"):
        bus.send("jobs", OutgoingMessage("text"))  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"application_properties\['when'\]"):
        bus.send("jobs", msg("a", application_properties={"when": START}))
    with pytest.raises(ValueError, match="timezone-aware"):
        bus.send("jobs", msg("a", scheduled_enqueue_time=datetime(2030, 1, 1)))
    with pytest.raises(ValueError, match="time_to_live"):
        bus.send("jobs", msg("a", time_to_live=timedelta(0)))
    assert bus.active_count("jobs") == 0


def test_connection_must_be_in_autocommit_mode(clock: Clock) -> None:
    with pytest.raises(ValueError, match="isolation_level=None"):
        EmbeddedBus(sqlite3.connect(":memory:"), clock=clock)


# --- transactions and durability ---------------------------------------------------------------


def test_work_inside_a_rolled_back_outer_transaction_leaves_nothing(bus: EmbeddedBus, conn: sqlite3.Connection) -> None:
    bus.declare_queue("jobs")
    bus.send("jobs", msg("kept"))
    conn.execute("BEGIN")
    bus.declare_queue("scratch")
    bus.send("jobs", msg("discarded"))
    (kept,) = bus.receive("jobs")
    bus.complete(kept.lock_token or "")
    conn.execute("ROLLBACK")
    assert set(bus.entities()["queues"]) == {"jobs"}
    assert drain(bus, "jobs") == ["kept"]


def test_a_failing_call_does_not_spoil_the_callers_transaction(bus: EmbeddedBus, conn: sqlite3.Connection) -> None:
    bus.declare_queue("jobs")
    conn.execute("BEGIN")
    bus.send("jobs", msg("a"))
    with pytest.raises(UnknownEntityError):
        bus.send("missing", msg("b"))
    with pytest.raises(LockLostError):
        bus.complete("no-such-token")
    conn.execute("COMMIT")
    assert drain(bus, "jobs") == ["a"]


def test_state_survives_reopening_the_database(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "engine.db"
    first = sqlite3.connect(path, isolation_level=None)
    bus = EmbeddedBus(first, clock=clock)
    bus.declare_queue("jobs", lock_duration=timedelta(seconds=30))
    bus.declare_subscription("events", "hot", rules=[SqlRule("hot", "temp > 30")])
    bus.send("jobs", [msg("locked"), msg("waiting"), msg("later", scheduled_enqueue_time=START + timedelta(hours=1))])
    bus.send("events", [msg("cold", application_properties={"temp": 3}), msg("hot", application_properties={"temp": 40})])
    (locked,) = bus.receive("jobs")
    first.close()

    second = sqlite3.connect(path, isolation_level=None)
    reopened = EmbeddedBus(second, clock=clock)
    assert bodies(reopened.receive("jobs")) == ["waiting"]
    assert reopened.next_visible_at("jobs") == START + timedelta(seconds=30)
    clock.advance(timedelta(seconds=30))
    (again,) = reopened.receive("jobs")
    assert again.body == b"locked" and again.delivery_count == 2 and again.sequence_number == locked.sequence_number
    assert drain(reopened, "events/Subscriptions/hot") == ["hot"]
    reopened.declare_subscription("events", "hot", rules=[SqlRule("hot", "temp > 30")])  # idempotent
    assert reopened.send("jobs", msg("next")) == [4]
    clock.advance(timedelta(hours=1))
    assert "later" in drain(reopened, "jobs")
    second.close()


def test_works_whatever_row_factory_the_connection_uses(conn: sqlite3.Connection, clock: Clock) -> None:
    conn.row_factory = lambda cursor, row: {d[0]: v for d, v in zip(cursor.description, row)}
    bus = EmbeddedBus(conn, clock=clock)
    bus.declare_queue("jobs")
    bus.send("jobs", msg("a"))
    assert drain(bus, "jobs") == ["a"]


def test_a_receive_complete_round_trip_does_not_walk_the_messages(bus: EmbeddedBus, conn: sqlite3.Connection) -> None:
    """The work of a receive and its complete is the same with 20 messages stored as with 4,000
    (2,000 in its own queue, 2,000 older ones in another): counted in SQLite virtual-machine steps,
    never timed (bench/ measures speed)."""

    def steps_per_round_trip(queue: str) -> float:
        steps = [0]

        def count() -> int:
            steps[0] += 1
            return 0

        conn.set_progress_handler(count, 10)
        try:
            for _ in range(10):
                (received,) = bus.receive(queue)
                bus.complete(received.lock_token or "")
        finally:
            conn.set_progress_handler(None, 0)
        return steps[0] / 10

    for queue in ("alone", "other", "crowded"):
        bus.declare_queue(queue)
    bus.send("alone", [msg(str(i)) for i in range(20)])
    few = steps_per_round_trip("alone")
    bus.send("other", [msg(str(i)) for i in range(2000)])
    bus.send("crowded", [msg(str(i)) for i in range(2000)])
    many = steps_per_round_trip("crowded")
    assert 0 < many <= few * 1.5, (few, many)


# --- rules kept compiled, and seen again when another connection changes them -------------------


def test_rules_changed_through_another_connection_apply_to_the_next_send(tmp_path: Path, clock: Clock) -> None:
    first = sqlite3.connect(tmp_path / "bus.sqlite", isolation_level=None)
    second = sqlite3.connect(tmp_path / "bus.sqlite", isolation_level=None)
    try:
        sender, other = EmbeddedBus(first, clock=clock), EmbeddedBus(second, clock=clock)
        sender.declare_subscription("events", "s", rules=[SqlRule("blue", "sys.Label = 'blue'")])
        sender.send("events", [msg("b1", subject="blue"), msg("r1", subject="red")])
        other.declare_subscription("events", "s", rules=[SqlRule("red", "sys.Label = 'red'")])
        sender.send("events", [msg("b2", subject="blue"), msg("r2", subject="red")])
        assert drain(sender, "events/Subscriptions/s") == ["b1", "r2"]
        assert [rule.name for rule in sender.entities()["topics"]["events"]["subscriptions"]["s"]["rules"]] == ["red"]
    finally:
        first.close()
        second.close()


def test_a_bus_stored_before_rules_were_tagged_still_routes_by_its_rules(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "bus.sqlite"
    with sqlite3.connect(path, isolation_level=None) as old:
        EmbeddedBus(old, clock=clock).declare_subscription("events", "s", rules=[SqlRule("blue", "sys.Label = 'blue'")])
        old.execute("ALTER TABLE bus_entities DROP COLUMN rules_tag")  # as an earlier version stored it
    old.close()
    upgraded = sqlite3.connect(path, isolation_level=None)
    try:
        bus = EmbeddedBus(upgraded, clock=clock)
        bus.send("events", [msg("b", subject="blue"), msg("r", subject="red")])
        assert drain(bus, "events/Subscriptions/s") == ["b"]
    finally:
        upgraded.close()
