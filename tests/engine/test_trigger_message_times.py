"""A Service Bus trigger's message carries the bus's times to the microsecond, single or batched,
through the worker's own converter (``azure.functions``), however many messages a batch holds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from kernel.engine.bus import ReceivedMessage
from kernel.engine.triggers import CONVERT_CHUNK, build_messages

ENQUEUED = datetime(2026, 11, 21, 9, 30, 15, 123456, tzinfo=timezone.utc)


def _message(number: int) -> ReceivedMessage:
    return ReceivedMessage(
        entity_path="agent-events/Subscriptions/realm", sequence_number=number, lock_token=f"lock-{number}",
        locked_until=ENQUEUED + timedelta(seconds=30), delivery_count=1, enqueued_time=ENQUEUED + timedelta(microseconds=number),
        message_id=f"m{number}", body=b"{}", content_type="application/json", correlation_id=None, session_id=None,
        subject=None, reply_to=None, to=None, application_properties={},
        scheduled_enqueue_time=ENQUEUED - timedelta(seconds=1), expires_at=ENQUEUED + timedelta(days=14))


def test_a_single_message_keeps_its_times_to_the_microsecond() -> None:
    message = build_messages([_message(7)], many=False)
    assert message.enqueued_time_utc == ENQUEUED + timedelta(microseconds=7)
    assert message.locked_until == ENQUEUED + timedelta(seconds=30)
    assert message.expires_at_utc == ENQUEUED + timedelta(days=14)
    assert message.scheduled_enqueue_time_utc == ENQUEUED - timedelta(seconds=1)


def test_a_batch_keeps_each_message_s_times() -> None:
    batch = build_messages([_message(1), _message(2)], many=True)
    assert [m.enqueued_time_utc for m in batch] == [ENQUEUED + timedelta(microseconds=n) for n in (1, 2)]
    assert all(m.enqueued_time_utc.tzinfo is not None for m in batch)


def test_a_batch_larger_than_one_converter_call_arrives_whole_and_in_order() -> None:
    """The converter is called per CONVERT_CHUNK messages; the function gets one list, each message
    with its own fields."""
    count = 2 * CONVERT_CHUNK + 3
    batch = build_messages([_message(n) for n in range(count)], many=True)
    assert [m.message_id for m in batch] == [f"m{n}" for n in range(count)]
    assert [m.sequence_number for m in batch] == list(range(count))
    assert [m.lock_token for m in batch] == [f"lock-{n}" for n in range(count)]
    assert [m.enqueued_time_utc for m in batch] == [ENQUEUED + timedelta(microseconds=n) for n in range(count)]
