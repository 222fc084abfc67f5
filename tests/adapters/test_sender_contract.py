"""The MessageSender contract: the embedded engine's bus, and Service Bus when one is configured.

The Azure run needs a namespace or the Service Bus emulator: set ``AOS_TEST_SERVICEBUS_CONNECTION``
to its connection string (and ``AOS_TEST_SERVICEBUS_QUEUE`` / ``AOS_TEST_SERVICEBUS_TOPIC`` /
``AOS_TEST_SERVICEBUS_SUBSCRIPTION`` when the entities are not the emulator's default
``queue.1`` / ``topic.1`` / ``subscription.1``). The queue must not require sessions.
"""

from __future__ import annotations

import inspect
import os
import sqlite3
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Awaitable, Callable

import pytest

from kernel.adapters.embedded_sender import EmbeddedMessageSender
from kernel.messages import Envelope
from kernel.ports import MessageSender, NotFound, OutboundMessage

QUEUE = os.environ.get("AOS_TEST_SERVICEBUS_QUEUE", "queue.1")
TOPIC = os.environ.get("AOS_TEST_SERVICEBUS_TOPIC", "topic.1")
SUBSCRIPTION = os.environ.get("AOS_TEST_SERVICEBUS_SUBSCRIPTION", "subscription.1")
CONNECTION = os.environ.get("AOS_TEST_SERVICEBUS_CONNECTION", "")


@dataclass
class Received:
    message_id: str
    body: bytes
    subject: str | None
    to: str | None
    correlation_id: str | None
    reply_to: str | None
    content_type: str | None
    application_properties: dict[str, Any]


@dataclass
class Harness:
    sender: MessageSender
    receive: Callable[[str, int], Awaitable[list[Received]]]  # (queue or topic/Subscriptions/name, count)
    later: Callable[[timedelta], None] | None  # moves time on, where the backend allows


def _embedded_harness() -> tuple[Harness, Any]:
    from kernel.engine.bus import EmbeddedBus

    now = [datetime(2030, 1, 1, tzinfo=timezone.utc)]
    bus = EmbeddedBus(sqlite3.connect(":memory:", isolation_level=None), clock=lambda: now[0])
    bus.declare_queue(QUEUE)
    bus.declare_topic(TOPIC)
    bus.declare_subscription(TOPIC, SUBSCRIPTION)
    notified: list[int] = []

    async def receive(path: str, count: int) -> list[Received]:
        got = []
        for m in bus.receive(path, max_count=count):
            bus.complete(str(m.lock_token))
            got.append(Received(m.message_id, m.body, m.subject, m.to, m.correlation_id, m.reply_to, m.content_type,
                                dict(m.application_properties)))
        return got

    def later(delta: timedelta) -> None:
        now[0] += delta

    sender = EmbeddedMessageSender(bus, on_sent=lambda: notified.append(1))
    return Harness(sender, receive, later), notified


async def _azure_harness() -> tuple[Harness, Any]:
    from azure.servicebus import ServiceBusReceiveMode
    from azure.servicebus.aio import ServiceBusClient

    from kernel.adapters.azure_servicebus import ServiceBusMessageSender

    client = ServiceBusClient.from_connection_string(CONNECTION)

    async def receive(path: str, count: int) -> list[Received]:
        if "/Subscriptions/" in path:
            topic, _, subscription = path.partition("/Subscriptions/")
            receiver = client.get_subscription_receiver(topic, subscription, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
        else:
            receiver = client.get_queue_receiver(path, receive_mode=ServiceBusReceiveMode.RECEIVE_AND_DELETE)
        got: list[Received] = []
        async with receiver:
            while len(got) < count:
                batch = await receiver.receive_messages(max_message_count=count - len(got), max_wait_time=5)
                if not batch:
                    break
                for m in batch:
                    got.append(Received(
                        str(m.message_id), b"".join(m.body), m.subject, m.to, m.correlation_id, m.reply_to,
                        m.content_type,
                        {(k.decode() if isinstance(k, bytes) else k): (v.decode() if isinstance(v, bytes) else v)
                         for k, v in (m.application_properties or {}).items()},
                    ))
        return got

    return Harness(ServiceBusMessageSender(connection_string=CONNECTION), receive, None), client


@pytest.fixture(params=["embedded", "azure"])
async def harness(request: pytest.FixtureRequest) -> AsyncIterator[Harness]:
    if request.param == "embedded":
        built, _ = _embedded_harness()
        yield built
        await built.sender.close()
        return
    if not CONNECTION:
        pytest.skip("Service Bus contract needs AOS_TEST_SERVICEBUS_CONNECTION (a namespace or the emulator)")
    built, client = await _azure_harness()
    await built.receive(QUEUE, 100)  # drain what an earlier run left behind
    await built.receive(f"{TOPIC}/Subscriptions/{SUBSCRIPTION}", 100)
    yield built
    await built.sender.close()
    await client.close()


def _message(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = dict(body=b'{"hello": "world"}', message_id=uuid.uuid4().hex)
    fields.update(overrides)
    return OutboundMessage(**fields)


async def test_is_a_message_sender(harness: Harness) -> None:
    assert isinstance(harness.sender, MessageSender)


async def test_every_field_reaches_the_receiver(harness: Harness) -> None:
    sent = _message(subject="finance.invoice.received", to="cfo", correlation_id="conv-1", reply_to="replies",
                    content_type="application/json",
                    application_properties={"type": "finance.invoice.received", "n": 3, "ratio": 0.5, "ok": True})
    await harness.sender.send(QUEUE, [sent])
    [got] = await harness.receive(QUEUE, 1)
    assert got == Received(sent.message_id, sent.body, "finance.invoice.received", "cfo", "conv-1", "replies",
                           "application/json", {"type": "finance.invoice.received", "n": 3, "ratio": 0.5, "ok": True})


async def test_a_batch_keeps_its_order_and_fans_out_on_a_topic(harness: Harness) -> None:
    batch = [_message(body=str(i).encode()) for i in range(25)]
    await harness.sender.send(TOPIC, batch)
    got = await harness.receive(f"{TOPIC}/Subscriptions/{SUBSCRIPTION}", 25)
    assert [m.message_id for m in got] == [m.message_id for m in batch]
    assert [m.body for m in got] == [str(i).encode() for i in range(25)]


async def test_an_envelope_travels_with_its_routing_properties(harness: Harness) -> None:
    envelope = Envelope(type="ops.alert", source="monitor", to="ops", correlation_id="c-9", causation_id="m-1",
                        reply_to="ops-replies", traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                        data={"level": "high"})
    await harness.sender.send(QUEUE, [OutboundMessage.from_envelope(envelope)])
    [got] = await harness.receive(QUEUE, 1)
    assert (got.message_id, got.subject, got.to, got.correlation_id, got.reply_to) == (
        envelope.id, "ops.alert", "ops", "c-9", "ops-replies")
    assert got.application_properties == {"type": "ops.alert", "source": "monitor", "causation_id": "m-1",
                                          "traceparent": envelope.traceparent}
    assert Envelope.from_json(got.body) == envelope


async def test_scheduled_messages_wait_for_their_time(harness: Harness) -> None:
    if harness.later is None:
        pytest.skip("moving time needs the embedded bus's clock")
    await harness.sender.send(QUEUE, [_message(scheduled_enqueue_time=datetime(2030, 1, 1, 0, 10, tzinfo=timezone.utc))])
    assert await harness.receive(QUEUE, 1) == []
    harness.later(timedelta(minutes=11))
    assert len(await harness.receive(QUEUE, 1)) == 1


async def test_an_unknown_entity_is_not_found(harness: Harness) -> None:
    with pytest.raises(NotFound, match="no-such-queue"):
        await harness.sender.send("no-such-queue", [_message()])


async def test_sending_nothing_is_a_no_op(harness: Harness) -> None:
    await harness.sender.send(QUEUE, [])


# -- embedded specifics --------------------------------------------------------------------------


async def test_the_embedded_bus_target_is_told_after_each_send() -> None:
    built, notified = _embedded_harness()
    await built.sender.send(QUEUE, [_message(), _message()])
    assert notified == [1]


async def test_a_host_target_gets_the_keywords_embedded_host_send_accepts() -> None:
    from kernel.engine.host import EmbeddedHost

    calls: list[tuple[str, bytes, dict[str, Any]]] = []

    class HostLike:
        async def send(self, entity: str, body: Any, **kwargs: Any) -> list[int]:
            inspect.signature(EmbeddedHost.send).bind(None, entity, body, **kwargs)  # the real signature
            calls.append((entity, body, kwargs))
            return [1]

    sender = EmbeddedMessageSender(HostLike())
    message = _message(subject="s", session_id="sess", application_properties={"a": 1})
    await sender.send("orders", [message])
    [(entity, body, kwargs)] = calls
    assert (entity, body) == ("orders", message.body)
    assert kwargs["message_id"] == message.message_id and kwargs["properties"] == {"a": 1}
    assert kwargs["session_id"] == "sess" and kwargs["content_type"] == "application/json"


# -- Azure batching, without a broker -------------------------------------------------------------


async def test_azure_sender_splits_batches_at_the_size_limit() -> None:
    from azure.servicebus import ServiceBusMessageBatch

    from kernel.adapters.azure_servicebus import ServiceBusMessageSender

    sent: list[list[str]] = []

    class FakeSender:
        async def create_message_batch(self) -> ServiceBusMessageBatch:
            return ServiceBusMessageBatch(max_size_in_bytes=3000)

        async def send_messages(self, batch: ServiceBusMessageBatch) -> None:
            sent.append([m.message_id for m in batch._messages])

        async def close(self) -> None:
            return None

    class FakeClient:
        def get_queue_sender(self, entity: str) -> FakeSender:
            return FakeSender()

        async def close(self) -> None:
            return None

    sender = ServiceBusMessageSender(client=FakeClient())
    messages = [_message(body=b"x" * 900, message_id=f"m{i}") for i in range(7)]
    await sender.send("q", messages)
    assert [m for batch in sent for m in batch] == [f"m{i}" for i in range(7)]
    assert len(sent) > 1 and all(batch for batch in sent)
    with pytest.raises(ValueError, match="larger than a Service Bus batch"):
        await sender.send("q", [_message(body=b"x" * 5000, message_id="huge")])
    await sender.close()


def test_outbound_messages_map_onto_service_bus_messages() -> None:
    from kernel.adapters.azure_servicebus import to_service_bus_message

    when = datetime(2030, 1, 1, 12, tzinfo=timezone(timedelta(hours=1)))
    converted = to_service_bus_message(_message(message_id="id-1", subject="s", to="t", correlation_id="c",
                                                reply_to="r", session_id="sess", scheduled_enqueue_time=when,
                                                application_properties={"k": "v"}))
    assert (converted.message_id, converted.subject, converted.to, converted.correlation_id, converted.reply_to,
            converted.session_id, converted.content_type) == ("id-1", "s", "t", "c", "r", "sess", "application/json")
    assert converted.scheduled_enqueue_time_utc == when and converted.application_properties == {"k": "v"}
    assert b"".join(converted.body) == b'{"hello": "world"}'


def test_outbound_message_rejects_what_service_bus_cannot_carry() -> None:
    with pytest.raises(TypeError):
        OutboundMessage(body="text", message_id="m")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        OutboundMessage(body=b"", message_id="")
    with pytest.raises(TypeError):
        OutboundMessage(body=b"", message_id="m", application_properties={"x": [1]})  # type: ignore[dict-item]
    with pytest.raises(ValueError):
        OutboundMessage(body=b"", message_id="m", scheduled_enqueue_time=datetime(2030, 1, 1))
