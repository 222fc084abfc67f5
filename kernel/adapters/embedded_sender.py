"""``EmbeddedMessageSender``: the ``MessageSender`` port on the embedded engine's Service Bus.

The target is either

- an ``EmbeddedBus`` (``kernel.engine.bus``; anything with a synchronous
  ``send(entity, [OutgoingMessage, ...])``): a batch is one SQLite transaction, all or nothing.
  Pass ``on_sent`` to wake whatever delivers the messages; or
- an ``EmbeddedHost`` (anything with ``async send(entity, body, *, message_id, properties, ...)``):
  the host stores the message and wakes its triggers itself; a batch is sent message by message.

Sending to a queue or topic the bus does not know raises ``kernel.ports.NotFound`` naming the
declared entities. When the target lives on another event loop (the host's loop, while the caller
runs in a worker thread with a loop of its own), pass that ``loop``: sends are handed over to it.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from kernel.ports import NotFound, OutboundMessage


class EmbeddedMessageSender:
    def __init__(self, target: Any, *, on_sent: Callable[[], None] | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        send = getattr(target, "send", None)
        if send is None:
            raise TypeError(f"the embedded sender needs an EmbeddedBus or EmbeddedHost, got {type(target).__name__}")
        self._target = target
        self._async = inspect.iscoroutinefunction(send)
        self._on_sent = on_sent
        self._loop = loop

    async def send(self, topic_or_queue: str, messages: Sequence[OutboundMessage]) -> None:
        batch = list(messages)
        if not all(isinstance(m, OutboundMessage) for m in batch):
            raise TypeError("send() takes a sequence of OutboundMessage")
        if not batch:
            return
        running = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not running:
            future = asyncio.run_coroutine_threadsafe(self._send(topic_or_queue, batch), self._loop)
            await asyncio.wrap_future(future)
        else:
            await self._send(topic_or_queue, batch)

    async def _send(self, entity: str, batch: list[OutboundMessage]) -> None:
        try:
            if self._async:
                for m in batch:
                    await self._target.send(
                        entity, bytes(m.body), message_id=m.message_id, properties=dict(m.application_properties),
                        session_id=m.session_id, scheduled_at=m.scheduled_enqueue_time,
                        correlation_id=m.correlation_id, subject=m.subject, content_type=m.content_type,
                        reply_to=m.reply_to, to=m.to,
                    )
            else:
                from kernel.engine.bus import OutgoingMessage

                self._target.send(entity, [
                    OutgoingMessage(
                        body=bytes(m.body), message_id=m.message_id, content_type=m.content_type,
                        correlation_id=m.correlation_id, session_id=m.session_id, subject=m.subject,
                        reply_to=m.reply_to, to=m.to, application_properties=dict(m.application_properties),
                        scheduled_enqueue_time=m.scheduled_enqueue_time,
                    )
                    for m in batch
                ])
                if self._on_sent is not None:
                    self._on_sent()
        except LookupError as error:  # the bus's UnknownEntityError
            raise NotFound(str(error)) from error

    async def probe(self, topic_or_queue: str) -> None:
        """A query of the bus's store: the entity must be a declared queue or topic."""
        running = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not running:
            await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self._probe(topic_or_queue), self._loop))
        else:
            await self._probe(topic_or_queue)

    async def _probe(self, entity: str) -> None:
        bus = getattr(self._target, "bus", self._target)  # an EmbeddedHost holds its EmbeddedBus
        declared = bus.entities()
        names = {name.lower() for kind in ("queues", "topics") for name in declared[kind]}
        if entity.lower() not in names:
            raise NotFound(f"the embedded bus has no queue or topic {entity!r}")

    async def close(self) -> None:
        return None


_default: tuple[Any, asyncio.AbstractEventLoop | None] = (None, None)


def set_default_target(target: Any, loop: asyncio.AbstractEventLoop | None = None) -> None:
    """Register the running engine (``EmbeddedHost``) as the process's embedded bus; ``None`` clears it.

    ``kernel.adapters.factory.Adapters`` sends through it when ``AOS_MESSAGING=embedded`` and no
    ``bus_target`` is given. ``loop`` is the engine's event loop, for senders on other loops.
    """
    global _default
    _default = (target, loop)


def default_target() -> tuple[Any, asyncio.AbstractEventLoop | None]:
    return _default
