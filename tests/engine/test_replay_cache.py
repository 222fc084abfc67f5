"""Kept replays (kernel/engine/replay.py): the same results as a full replay on every episode, the
orchestrator code started once instead of once per episode, determinism still checked on a full
replay, and a bounded cache."""

from __future__ import annotations

import json
import re
import sys
from datetime import timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from azure.durable_functions.models.OrchestrationRuntimeStatus import (
    OrchestrationRuntimeStatus as Status,
)

from kernel.engine import EmbeddedHost, VirtualClock
from kernel.engine.host import REPLAY_CACHE_SETTING, replay_cache_setting

from .conftest import app_path

APP = app_path("replays")


def _module() -> ModuleType:
    return next(m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == APP)


_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _history(host: EmbeddedHost, instance_id: str) -> list[tuple[Any, ...]]:
    """The recorded history without timestamps and entity request ids (they derive from the random
    execution id): what the two modes must agree on."""
    events = [json.loads(raw) for raw in host.store.load_history(instance_id)]
    fields = ("EventType", "EventId", "Name", "TaskScheduledId", "TimerId", "Input", "Result", "Reason")
    return [tuple(_UUID.sub("<id>", v) if isinstance(v, str) else v for v in (e.get(f) for f in fields))
            for e in events]


async def _drive(replay_cache: int) -> tuple[dict[str, Any], list[tuple[Any, ...]], int, str]:
    clock = VirtualClock()
    # one activity at a time: the fan-out's results then reach the orchestration one per episode in
    # both runs (in parallel, how they group into episodes depends on thread timing)
    async with EmbeddedHost(APP, clock=clock, replay_cache=replay_cache, max_concurrent_activities=1) as host:
        module = _module()
        module.STARTS.clear()
        module.ATTEMPTS.clear()
        instance_id = await host.client.start_new("workflow", "wf", "key")
        await host.wait_idle()
        clock.advance(timedelta(seconds=1))  # the retry timer of the flaky activity
        await host.wait_idle()
        await host.client.raise_event(instance_id, "go", {"n": 1})
        await host.wait_idle()
        await host.client.raise_event(instance_id, "late", "last")
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.runtime_status == Status.Completed, status.output
        return status.output, _history(host, instance_id), module.STARTS[instance_id], json.dumps(status.custom_status)


async def test_a_kept_replay_gives_what_a_full_replay_gives_and_starts_the_code_once() -> None:
    full_output, full_history, full_starts, full_custom = await _drive(0)
    kept_output, kept_history, kept_starts, kept_custom = await _drive(256)
    assert kept_output == full_output
    assert full_output["flaky"] == "ok after 2" and full_output["parts"] == [0, 2, 4] and full_output["late"] == "last"
    assert kept_history == full_history
    assert kept_custom == full_custom == json.dumps({"total": 3})
    assert kept_starts == 1, "with the replay kept, the orchestrator's code starts once"
    assert full_starts >= 8, f"every episode replays in full without the cache (started {full_starts} times)"


async def test_determinism_is_still_checked_when_the_replay_is_rebuilt(tmp_path: Path) -> None:
    """A restart (or an eviction) replays the history in full, which catches code that changed."""
    state = tmp_path / "state.sqlite"
    async with EmbeddedHost(APP, state_path=state) as host:
        _module().FLIP["value"] = False
        instance_id = await host.client.start_new("flip_flop")
        await host.wait_idle()
    _module().FLIP["value"] = True
    try:
        async with EmbeddedHost(APP, state_path=state) as host:
            await host.client.raise_event(instance_id, "go", 1)
            await host.wait_idle()
            status = await host.client.get_status(instance_id)
    finally:
        _module().FLIP["value"] = False
    assert status.runtime_status == Status.Failed
    assert "Non-deterministic orchestration" in status.output and "CallActivity 'double'" in status.output


async def test_the_cache_is_bounded_and_an_evicted_instance_replays_in_full() -> None:
    async with EmbeddedHost(APP, replay_cache=1) as host:
        module = _module()
        module.STARTS.clear()
        first = await host.client.start_new("flip_flop")
        await host.wait_idle()
        second = await host.client.start_new("flip_flop")  # takes the only place: first is evicted
        await host.wait_idle()
        assert sum(1 for inst in host.engine.instances.values() if inst.replay is not None) == 1
        for instance_id in (first, second):
            await host.client.raise_event(instance_id, "go", 1)
            await host.wait_idle()
            assert (await host.client.get_status(instance_id)).runtime_status == Status.Completed
        # each started once for its first episode (plus its activity's); the evicted one replayed again
        assert module.STARTS[second] == 1
        assert module.STARTS[first] == 2
        assert not host.engine._replays or all(
            host.engine.instances.get(i) is None for i in host.engine._replays), "finished instances keep nothing"


async def test_running_instances_kept_in_memory_are_bounded_and_the_rest_run_from_the_store() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(APP, clock=clock, replay_cache=2) as host:
        host.engine.instance_cache = 3  # as with ten thousand started at once, scaled down
        module = _module()
        module.STARTS.clear()
        module.ATTEMPTS.clear()
        started = [await host.client.start_new("workflow", f"wf-{n}", f"key-{n}") for n in range(8)]
        await host.wait_idle()
        clock.advance(timedelta(seconds=1))  # the retry timers of the flaky activity
        await host.wait_idle()
        assert len(host.engine.instances) <= 3 and len(host.engine._replays) <= 2
        for instance_id in started:
            await host.client.raise_event(instance_id, "go", {"n": instance_id})
        await host.wait_idle()
        for instance_id in started:
            await host.client.raise_event(instance_id, "late", "last")
        await host.wait_idle()
        for instance_id in started:
            status = await host.client.get_status(instance_id)
            assert status.runtime_status == Status.Completed, status.output
            assert status.output["event"] == {"n": instance_id} and status.output["late"] == "last"
            assert status.output["total"] == 3 and status.output["child"] == status.output["total"] * 2 + 1
        assert len(host.engine.instances) == 0, "finished instances are let go"
        assert any(count > 1 for count in module.STARTS.values()), "let-go instances replayed in full"


def test_the_setting_names_itself_when_it_is_wrong() -> None:
    assert replay_cache_setting(None) == replay_cache_setting("") == 256
    assert replay_cache_setting("0") == 0
    with pytest.raises(ValueError, match=REPLAY_CACHE_SETTING):
        replay_cache_setting("many")
    with pytest.raises(ValueError, match="whole number"):
        replay_cache_setting("-1")


async def test_a_bad_setting_stops_the_host_with_its_name() -> None:
    with pytest.raises(ValueError, match=REPLAY_CACHE_SETTING):
        async with EmbeddedHost(APP, settings={REPLAY_CACHE_SETTING: "lots"}):
            pass
