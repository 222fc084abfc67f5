"""The app's durable clients call the engine in process (``AOS_ENGINE_DURABLE_CLIENT=direct``, the
default) and get exactly what the loopback Durable HTTP API gives (``http``)."""

from __future__ import annotations

import asyncio
import threading
from enum import Enum
from typing import Any

import aiohttp
import azure.durable_functions as df
import pytest

from kernel.engine import EmbeddedHost, client_transport
from kernel.engine.host import durable_client_setting

from .conftest import app_path
from .test_triggers import SETTINGS, TOPOLOGY


def _in_process() -> int:
    return sum(client_transport.calls.values())


async def _client_story(host: EmbeddedHost) -> list[Any]:
    """Every kind of client call, with the answers it got (errors as their messages)."""
    client = host.client
    seen: list[Any] = []

    async def note(call: Any) -> None:
        try:
            value = await call
        except Exception as error:  # the SDK raises bare exceptions carrying the API's message
            seen.append(("error", str(error).split("\n")[0]))
            return
        seen.append(value)

    await note(client.start_new("waiter", "w 1:a"))  # an id that needs quoting in the URL
    await host.wait_idle()
    await note(client.start_new("waiter", "w 1:a"))  # already exists
    await note(client.start_new("no_such_orchestrator", "x"))
    await host.wait_idle()
    await note(client.get_status("w 1:a"))
    await note(client.get_status("never-started"))
    await note(client.raise_event("w 1:a", "go", {"n": 1}))
    await note(client.raise_event("never-started", "go", 1))
    await host.wait_idle()
    await note(client.get_status("w 1:a", show_history=True, show_history_output=True))
    await note(client.raise_event("w 1:a", "go", 2))  # finished: gone
    await note(client.start_new("waiter", "w2"))
    await host.wait_idle()
    await note(client.suspend("w2", "hold"))
    await note(client.resume("w2", "go on"))
    await note(client.terminate("w2", "enough"))
    await host.wait_idle()
    await note(client.get_status_all())
    await note(client.get_status_by(instance_id_prefix="w"))
    await note(client.purge_instance_history("w2"))
    await note(client.purge_instance_history("w2"))
    return [_without_times(item) for item in seen]


def _without_times(value: Any) -> Any:
    """Drop the fields that differ between two runs (times, generated ids, ports)."""
    if type(value).__module__.startswith("azure.durable_functions") and not isinstance(value, Enum):  # SDK results
        value = {"type": type(value).__name__, **vars(value)}
    if isinstance(value, dict):
        return {k: _without_times(v) for k, v in value.items()
                if k not in ("_created_time", "_last_updated_time", "Timestamp", "ExecutionId")}
    if isinstance(value, list):
        return [_without_times(v) for v in value]
    return value


async def test_direct_client_calls_answer_as_the_http_api_does() -> None:
    results = {}
    for mode in ("http", "direct"):
        before = _in_process()
        async with EmbeddedHost(app_path("patterns"), durable_client=mode) as host:
            results[mode] = await _client_story(host)
        carried = _in_process() - before
        assert (carried > 10) if mode == "direct" else (carried == 0), (mode, carried)
    assert results["direct"] == results["http"]
    assert results["direct"][0] == "w 1:a" and "status Running already exists" in results["direct"][1][1]
    assert "No instance with ID never-started found." in results["direct"][6][1]


async def test_entity_signals_and_reads_answer_as_over_http() -> None:
    results = {}
    for mode in ("http", "direct"):
        async with EmbeddedHost(app_path("counter"), durable_client=mode) as host:
            entity = df.EntityId("counter", "c 1")
            seen = [vars(await host.client.read_entity_state(entity))]
            for amount in (1, 2, 3):
                await host.client.signal_entity(entity, "add", {"amount": amount})
            await host.wait_idle()
            seen.append(vars(await host.client.read_entity_state(entity)))
            await host.client.signal_entity(entity, "delete")
            await host.wait_idle()
            seen.append(vars(await host.client.read_entity_state(entity)))
            results[mode] = seen
    assert results["direct"] == results["http"]
    assert [r["_entity_exists"] for r in results["direct"]] == [False, True, False]
    assert results["direct"][1]["_entity_state"] == 6


#: Inputs and event data the SDK encodes before sending: strings that are JSON text themselves and
#: strings that are not, text beyond ASCII, an integer beyond 64 bits, numbers JSON has no form for.
AWKWARD_VALUES = ["123", "plain text", "", '{"looks": "like an object"}', {"é": "ü", "n": [1, 2.5, None]},
                  12345678901234567890123, float("nan"), [True, {"deep": ["\u2028"]}]]


async def test_values_travel_in_process_exactly_as_over_http() -> None:
    """The in-process transport hands the SDK's own JSON text of a value to the API instead of
    encoding it again: every value arrives as it does through the HTTP body."""
    results = {}
    for mode in ("http", "direct"):
        async with EmbeddedHost(app_path("patterns"), durable_client=mode) as host:
            seen = []
            for n, value in enumerate(AWKWARD_VALUES):
                await host.client.start_new("waiter", f"v{n}", value)
                await host.wait_idle()
                await host.client.raise_event(f"v{n}", "go", value)
                await host.wait_idle()
                status = await host.client.get_status(f"v{n}")
                seen.append((repr(status.input_), repr(status.output), status.runtime_status.value))
            results[mode] = seen
    assert results["direct"] == results["http"]
    assert [runtime for _, _, runtime in results["direct"]] == ["Completed"] * len(AWKWARD_VALUES)
    assert results["direct"][0][:2] == ("'123'", "'123'") and results["direct"][5][1] == "12345678901234567890123"


async def test_the_apps_own_client_binding_goes_in_process() -> None:
    async with EmbeddedHost(app_path("messaging"), settings=SETTINGS, topology=TOPOLOGY) as host:
        await host.wait_idle()
        before = dict(client_transport.calls)
        await host.send("events", {"kind": "direct"}, message_id="m-direct")
        await host.wait_idle()
        assert client_transport.calls["POST"] == before["POST"] + 1  # the trigger's start_new
        assert (await host.client.get_status("event-m-direct")).output == "handled direct"


async def test_each_host_keeps_its_own_transport() -> None:
    async with EmbeddedHost(app_path("patterns"), durable_client="http") as over_http, \
            EmbeddedHost(app_path("patterns")) as direct:
        before = _in_process()
        await over_http.client.start_new("waiter", "on-http")
        assert _in_process() == before
        await direct.client.start_new("waiter", "on-direct")
        assert _in_process() == before + 1
        await over_http.wait_idle()
        await direct.wait_idle()
        assert await direct.client.get_status("on-direct")
        assert not await direct.client.get_status("on-http")  # each call reached its own engine
        assert await over_http.client.get_status("on-http")
    # a closed host's URLs are no longer served in process
    after = _in_process()
    with pytest.raises(aiohttp.ClientConnectionError):  # over the socket, to a host that is gone
        await direct.client.get_status("on-direct")
    assert _in_process() == after


async def test_a_client_on_another_threads_loop_is_served_on_the_engines_loop() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        engine_thread: list[int] = []
        original = host.engine.start_instance

        def recording(*args: Any) -> str:
            engine_thread.append(threading.get_ident())
            return original(*args)

        host.engine.start_instance = recording  # type: ignore[method-assign]
        binding = host._client_json

        def elsewhere() -> str:
            return asyncio.run(df.DurableOrchestrationClient(binding).start_new("waiter", "from-thread"))

        assert await asyncio.to_thread(elsewhere) == "from-thread"
        assert engine_thread == [threading.get_ident()]
        await host.wait_idle()
        assert await host.client.get_status("from-thread")


def test_the_setting_names_itself_when_wrong() -> None:
    assert durable_client_setting(None) == "direct"
    assert durable_client_setting(" HTTP ") == "http"
    with pytest.raises(ValueError, match="AOS_ENGINE_DURABLE_CLIENT='socket'"):
        durable_client_setting("socket")
