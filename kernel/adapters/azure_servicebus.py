"""``ServiceBusMessageSender``: the ``MessageSender`` port on Azure Service Bus (or its emulator).

One ``azure.servicebus.aio.ServiceBusClient`` per sender object, which is meant to live as long
as the process (build it once, share it, close it at shutdown): AMQP connections are expensive to
open. Senders are opened per queue or topic on first use and kept. A ``send`` packs the messages
into as few batches as ``create_message_batch`` allows and sends them in order; a send larger than
one batch is therefore several broker operations, so a failure part-way can leave the first
batches sent. Every message carries its ``message_id``, so duplicate detection on the entity (or
an idempotent receiver) makes a retried send harmless.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timezone
from typing import Any

from kernel.adapters.azure_common import safe_client_error
from kernel.ports import NotFound, OutboundMessage


def to_service_bus_message(message: OutboundMessage) -> Any:
    from azure.servicebus import ServiceBusMessage

    scheduled = message.scheduled_enqueue_time
    return ServiceBusMessage(
        bytes(message.body),
        message_id=message.message_id,
        subject=message.subject,
        to=message.to,
        correlation_id=message.correlation_id,
        reply_to=message.reply_to,
        session_id=message.session_id,
        content_type=message.content_type,
        application_properties=dict(message.application_properties) or None,
        scheduled_enqueue_time_utc=scheduled.astimezone(timezone.utc) if scheduled is not None else None,
    )


class ServiceBusMessageSender:
    def __init__(self, *, connection_string: str | None = None, fully_qualified_namespace: str | None = None,
                 credential: Any = None, client: Any = None, **client_options: Any) -> None:
        if client is None:
            from azure.servicebus.aio import ServiceBusClient

            try:
                if connection_string:
                    client = ServiceBusClient.from_connection_string(connection_string, **client_options)
                elif fully_qualified_namespace and credential is not None:
                    client = ServiceBusClient(fully_qualified_namespace, credential, **client_options)
                else:
                    raise ValueError("give a connection string, or a fully qualified namespace and a credential")
            except Exception as error:
                raise safe_client_error(error, "Service Bus") from None
        self._client = client
        self._senders: dict[str, Any] = {}
        self._lock = asyncio.Lock()

    async def _sender(self, entity: str) -> Any:
        key = entity.lower()
        sender = self._senders.get(key)
        if sender is None:
            async with self._lock:
                sender = self._senders.get(key)
                if sender is None:
                    # get_queue_sender and get_topic_sender build the same AMQP link to the entity path
                    sender = self._client.get_queue_sender(entity)
                    self._senders[key] = sender
        return sender

    async def send(self, topic_or_queue: str, messages: Sequence[OutboundMessage]) -> None:
        from azure.servicebus.exceptions import MessageSizeExceededError, MessagingEntityNotFoundError

        batch_of = list(messages)
        if not all(isinstance(m, OutboundMessage) for m in batch_of):
            raise TypeError("send() takes a sequence of OutboundMessage")
        if not batch_of:
            return
        try:
            sender = await self._sender(topic_or_queue)
            batch = await sender.create_message_batch()
            for message in batch_of:
                converted = to_service_bus_message(message)
                try:
                    batch.add_message(converted)
                except MessageSizeExceededError:
                    if len(batch) == 0:
                        raise ValueError(
                            f"message {message.message_id} is larger than a Service Bus batch allows "
                            f"({batch.max_size_in_bytes} bytes)"
                        ) from None
                    await sender.send_messages(batch)
                    batch = await sender.create_message_batch()
                    try:
                        batch.add_message(converted)
                    except MessageSizeExceededError:
                        raise ValueError(
                            f"message {message.message_id} is larger than a Service Bus batch allows "
                            f"({batch.max_size_in_bytes} bytes)"
                        ) from None
            if len(batch):
                await sender.send_messages(batch)
        except MessagingEntityNotFoundError:
            await self._forget(topic_or_queue)
            raise NotFound(f"Service Bus queue or topic {topic_or_queue!r} does not exist") from None

    async def probe(self, topic_or_queue: str) -> None:
        """Open a fresh sender link and close it again, sending nothing.

        Opening a link is a real round trip (connection, authorization, attach to the entity), which a
        cached sender would skip once open; so readiness learns that the namespace answers, that this
        identity may send, and that the entity exists.
        """
        from azure.servicebus.exceptions import MessagingEntityNotFoundError

        try:
            async with self._client.get_queue_sender(topic_or_queue) as sender:
                await sender.create_message_batch()
        except MessagingEntityNotFoundError:
            raise NotFound(f"Service Bus queue or topic {topic_or_queue!r} does not exist") from None

    async def _forget(self, entity: str) -> None:
        sender = self._senders.pop(entity.lower(), None)
        if sender is not None:
            with contextlib.suppress(Exception):  # closing a broken link must not hide the real error
                await sender.close()

    async def close(self) -> None:
        for sender in list(self._senders.values()):
            await sender.close()
        self._senders.clear()
        await self._client.close()
