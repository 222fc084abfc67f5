"""Service Bus, timer and HTTP triggers; indexing errors; settings expressions; topology."""

from __future__ import annotations

import asyncio
import json
import sys
from datetime import datetime, timedelta, timezone

import azure.durable_functions as df
import pytest

from kernel.engine import EmbeddedHost, IndexingError, UnsupportedBindingError, VirtualClock
from kernel.engine.bus import UnknownEntityError

from .conftest import app_path

SETTINGS = {"EVENTS_TOPIC": "events", "TICK_SCHEDULE": "0 */5 * * * *"}
TOPOLOGY = {
    "topics": [{"name": "events", "subscriptions": [
        {"name": "urgent", "rules": [{"name": "high", "sql": "priority = 'high' AND size > 3"}]},
        {"name": "billing", "rules": [{"name": "inv", "correlation": {"subject": "invoice", "properties": {"tier": "gold"}}}]},
    ]}],
    "queues": [{"name": "poison", "max_delivery_count": 3}],
}


def messaging_module():
    return next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == app_path("messaging"))


@pytest.fixture
async def host():
    clock = VirtualClock(datetime(2031, 1, 1, 0, 1, tzinfo=timezone.utc))
    async with EmbeddedHost(app_path("messaging"), settings=SETTINGS, topology=TOPOLOGY, clock=clock) as running:
        module = messaging_module()
        module.SEEN.clear()
        module.TICKS.clear()
        running.test_clock = clock
        yield running


async def test_topic_trigger_starts_orchestration_whose_activity_publishes(host) -> None:
    await host.send("events", {"kind": "signup"}, message_id="m-1", subject="user", correlation_id="c-9",
                    properties={"priority": "low"})
    await host.wait_idle()
    status = await host.client.get_status("event-m-1")
    assert status.runtime_status == df.OrchestrationRuntimeStatus.Completed
    assert status.output == "handled signup"
    seen = messaging_module().SEEN
    assert {"id": "m-1", "delivery_count": 1, "subject": "user", "props": {"priority": "low"}, "correlation_id": "c-9"} in seen
    assert {"outbox": {"handled": "signup"}} in seen  # the activity's output binding reached the queue trigger


async def test_sql_filtered_subscription_gets_only_matching_messages_as_a_batch(host) -> None:
    await host.send("events", {"kind": "a"}, properties={"priority": "high", "size": 5})
    await host.send("events", {"kind": "b"}, properties={"priority": "high", "size": 1})
    await host.send("events", {"kind": "c"}, properties={"priority": "low", "size": 9})
    await host.wait_idle()
    urgent = [entry["urgent"] for entry in messaging_module().SEEN if "urgent" in entry]
    assert urgent == [["a"]]
    assert host.bus.active_count("events/Subscriptions/billing") == 0


async def test_correlation_rule_subscription_from_topology(host) -> None:
    await host.send("events", {"kind": "bill"}, subject="invoice", properties={"tier": "gold"})
    await host.send("events", {"kind": "bill2"}, subject="invoice", properties={"tier": "silver"})
    await host.wait_idle()
    assert host.bus.active_count("events/Subscriptions/billing") == 1


async def test_failing_trigger_dead_letters_after_max_delivery_count(host) -> None:
    await host.send("poison", "bad message")
    await host.wait_idle()
    attempts = [entry["poison_attempt"] for entry in messaging_module().SEEN if "poison_attempt" in entry]
    assert attempts == [1, 2, 3]
    dead = host.bus.peek_dead_letters("poison")
    assert len(dead) == 1 and dead[0].dead_letter_reason == "MaxDeliveryCountExceeded"


async def test_scheduled_message_waits_for_its_time(host) -> None:
    clock = host.test_clock
    await host.send("events", {"kind": "later"}, message_id="m-later", scheduled_at=clock.now() + timedelta(minutes=10))
    await host.wait_idle()
    assert not await host.client.get_status("event-m-later")
    clock.advance(timedelta(minutes=10))
    await host.wait_idle()
    assert (await host.client.get_status("event-m-later")).output == "handled later"


async def test_unknown_entity_is_an_error_not_a_silent_drop(host) -> None:
    with pytest.raises(UnknownEntityError):
        await host.send("no-such-topic", {"kind": "x"})


async def test_timer_trigger_fires_on_schedule_via_virtual_clock(host) -> None:
    clock = host.test_clock
    await host.wait_idle()
    assert messaging_module().TICKS == []
    clock.advance(timedelta(minutes=4))  # 00:05:00
    await host.wait_idle()
    assert messaging_module().TICKS == [False]
    clock.advance(timedelta(minutes=12))  # missed 00:10 by 6 minutes: fires once, past due
    await host.wait_idle()
    assert messaging_module().TICKS == [False, True]


async def test_http_auth_levels_routes_and_constraints() -> None:
    settings = {"AOS_FUNCTION_KEYS": "fkey", "AOS_MASTER_KEY": "mkey"}
    async with EmbeddedHost(app_path("auth"), settings=settings) as host:
        response = await host.http("GET", "/api/public/widget/42?q=x")
        assert (response.status, response.text) == (200, "widget:42:x")
        assert (await host.http("GET", "/api/public/widget")).text == "widget:None:None"
        assert (await host.http("GET", "/api/public/widget/notanint")).status == 404
        assert (await host.http("POST", "/api/public/widget")).status == 405
        assert (await host.http("POST", "/api/keyed", json={"a": 1})).status == 401
        keyed = await host.http("POST", "/api/keyed", json={"a": 1}, headers={"x-functions-key": "fkey"})
        assert keyed.status == 201 and keyed.json() == {"a": 1}
        assert (await host.http("POST", "/api/keyed?code=mkey", json={})).status == 201
        assert (await host.http("GET", "/api/admin/thing", headers={"x-functions-key": "fkey"})).status == 401
        admin = await host.http("GET", "/api/admin/thing", headers={"x-functions-key": "mkey"})
        assert (admin.status, admin.text) == (200, "admin ok")


async def test_http_starter_check_status_links_work() -> None:
    async with EmbeddedHost(app_path("chaining")) as host:
        started = await host.http("POST", "/api/orchestrators/hello_cities")
        assert started.status == 202
        links = started.json()
        assert links["statusQueryGetUri"].startswith(host.base_url + "/runtime/webhooks/durabletask/instances/")
        await host.wait_idle()
        status = await host.http("GET", links["statusQueryGetUri"])
        assert status.status == 200 and status.json()["runtimeStatus"] == "Completed"


async def test_unsupported_binding_is_refused_at_startup() -> None:
    with pytest.raises(UnsupportedBindingError, match="on_blob.*blobTrigger"):
        async with EmbeddedHost(app_path("unsupported")):
            pass


async def test_missing_setting_in_binding_expression_is_refused() -> None:
    with pytest.raises(IndexingError, match="EVENTS_TOPIC"):
        async with EmbeddedHost(app_path("messaging"), settings={"TICK_SCHEDULE": "0 * * * * *"}):
            pass


async def test_settings_file_values_resolve_expressions(tmp_path) -> None:
    settings_file = tmp_path / "local.settings.json"
    settings_file.write_text(json.dumps({"IsEncrypted": False, "Values": SETTINGS}))
    async with EmbeddedHost(app_path("messaging"), settings=str(settings_file)) as host:
        assert "events/Subscriptions/starter" in json.dumps(host.bus.entities(), default=str)


async def test_route_prefix_from_host_json_and_run_on_startup_timer(tmp_path) -> None:
    (tmp_path / "host.json").write_text(json.dumps({"version": "2.0", "extensions": {"http": {"routePrefix": "v1"}}}))
    (tmp_path / "prefixed_app.py").write_text(
        "import azure.functions as func\n"
        "app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)\n"
        "RUNS = []\n"
        "@app.route(route='hello')\n"
        "def hello(req: func.HttpRequest) -> str:\n"
        "    return 'hi'\n"
        "@app.timer_trigger(arg_name='t', schedule='0 0 0 1 1 *', run_on_startup=True)\n"
        "def boot(t: func.TimerRequest) -> None:\n"
        "    RUNS.append(t.past_due)\n"
    )
    async with EmbeddedHost(str(tmp_path / "prefixed_app.py")) as host:
        assert (await host.http("GET", "/v1/hello")).text == "hi"
        assert (await host.http("GET", "/api/hello")).status == 404
        await host.wait_idle()
        module = next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == str(tmp_path / "prefixed_app.py"))
        assert module.RUNS == [False]


async def test_unsettled_message_is_redelivered_at_once_after_a_restart(tmp_path) -> None:
    (tmp_path / "hanging_app.py").write_text(
        "import asyncio\n"
        "import azure.functions as func\n"
        "app = func.FunctionApp()\n"
        "DELIVERIES = []\n"
        "HANG = {'on': True}\n"
        "@app.service_bus_queue_trigger(arg_name='msg', queue_name='work', connection='SB')\n"
        "async def worker(msg: func.ServiceBusMessage) -> None:\n"
        "    DELIVERIES.append(msg.delivery_count)\n"
        "    if HANG['on']:\n"
        "        await asyncio.sleep(3600)\n"
    )
    app_file, state = str(tmp_path / "hanging_app.py"), str(tmp_path / "state.sqlite")
    clock = VirtualClock()
    async with EmbeddedHost(app_file, state_path=state, clock=clock) as first:
        await first.send("work", "job")
        for _ in range(50):
            await asyncio.sleep(0.01)
        module = next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == app_file)
        assert module.DELIVERIES == [1]
    module.HANG["on"] = False  # the first host went away without settling: like a crash
    async with EmbeddedHost(app_file, state_path=state, clock=clock) as second:
        # The host owns its state folder: the dead host's lock is released at start (no waiting
        # out the 60 s lock), and the lost delivery still counts.
        await second.wait_idle()
        assert module.DELIVERIES == [1, 2]
        assert second.bus.active_count("work") == 0
