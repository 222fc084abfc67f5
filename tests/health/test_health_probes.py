"""``MessageSender.probe``: the engine's bus answers from its store; Service Bus opens a real link.
A namespace that cannot be reached fails its readiness checks, without its key in the answer."""

from __future__ import annotations

import os
import sqlite3

import pytest
from health_support import free_port

from kernel.adapters.embedded_sender import EmbeddedMessageSender
from kernel.adapters.factory import Adapters
from kernel.health.checks import bus_checks
from kernel.health.report import FAILED, run_checks, secret_values
from kernel.ports import MessageSender, NotFound


async def test_the_embedded_bus_probe_knows_declared_topics_and_queues() -> None:
    from kernel.engine.bus import EmbeddedBus

    bus = EmbeddedBus(sqlite3.connect(":memory:", isolation_level=None))
    bus.declare_topic("agent-events")
    bus.declare_queue("work")
    sender = EmbeddedMessageSender(bus)
    assert isinstance(sender, MessageSender)
    await sender.probe("agent-events")
    await sender.probe("WORK")  # names are case-insensitive, as in Service Bus
    with pytest.raises(NotFound, match="no queue or topic 'agent-outputs'"):
        await sender.probe("agent-outputs")
    assert bus.active_count("work") == 0  # nothing was sent


async def test_an_unreachable_service_bus_fails_the_bus_checks_without_its_key() -> None:
    planted = "planted-shared-access-key"
    environ = {"AOS_MESSAGING": "azure",
               "ServiceBusConnection": f"Endpoint=sb://127.0.0.1:{free_port()}/;SharedAccessKeyName=send;"
                                       f"SharedAccessKey={planted};UseDevelopmentEmulator=true"}
    adapters = Adapters(environ)
    try:
        assert isinstance(adapters.sender, MessageSender)
        results = await run_checks(bus_checks(adapters, ["kernel", "mcp"]), timeout=3,
                                   secrets=secret_values(environ))
    finally:
        await adapters.close()
    assert [r.name for r in results] == ["bus:agent-events", "bus:mcp-responses"]
    for result in results:
        assert result.status == FAILED and result.required
        assert result.error in ("ServiceBusConnectionError", "Timeout"), result
        assert planted not in str(result.full())


@pytest.mark.skipif(not os.environ.get("AOS_TEST_SERVICEBUS_CONNECTION"),
                    reason="needs AOS_TEST_SERVICEBUS_CONNECTION (a namespace or the Service Bus emulator)")
async def test_a_reachable_service_bus_passes_the_probe_and_an_unknown_topic_does_not() -> None:
    from kernel.adapters.azure_servicebus import ServiceBusMessageSender

    sender = ServiceBusMessageSender(connection_string=os.environ["AOS_TEST_SERVICEBUS_CONNECTION"])
    try:
        await sender.probe(os.environ.get("AOS_TEST_SERVICEBUS_TOPIC", "topic.1"))
        with pytest.raises(NotFound):
            await sender.probe("aos-no-such-topic")
    finally:
        await sender.close()
