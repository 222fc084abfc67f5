"""Orchestrations through the SDK's own replay engine, driven by the embedded host."""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

import azure.durable_functions as df
import pytest

from kernel.engine import EmbeddedHost, VirtualClock

from .conftest import app_path

Status = df.OrchestrationRuntimeStatus


async def test_function_chaining_runs_sync_and_async_activities() -> None:
    async with EmbeddedHost(app_path("chaining")) as host:
        instance_id = await host.client.start_new("hello_cities")
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.runtime_status == Status.Completed
        assert status.output == ["Hello Tokyo!", "Hello Seattle!", "Hello London!"]


async def test_fan_out_fan_in_sums_squares() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        instance_id = await host.client.start_new("fan_out_fan_in", None, 20)
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.output == sum(n * n for n in range(1, 21))


async def test_history_is_real_durable_task_history() -> None:
    async with EmbeddedHost(app_path("chaining")) as host:
        instance_id = await host.client.start_new("hello_cities")
        await host.wait_idle()
        status = await host.client.get_status(instance_id, show_history=True)
        kinds = [event["EventType"] for event in status.historyEvents]
        assert kinds[:2] == ["OrchestratorStarted", "ExecutionStarted"]
        assert kinds.count("TaskScheduled") == 3 and kinds.count("TaskCompleted") == 3
        assert kinds[-2:] == ["ExecutionCompleted", "OrchestratorCompleted"]
        assert all(event["Timestamp"].endswith("Z") for event in status.historyEvents)


async def test_retry_succeeds_after_failures_using_retry_timers() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(app_path("patterns"), clock=clock) as host:
        spec = {"key": "retry-ok", "succeed_on": 3, "max": 5}
        instance_id = await host.client.start_new("with_retry", None, spec)
        await host.wait_idle()
        for _ in range(2):  # two failures, each followed by a one-second retry timer
            assert (await host.client.get_status(instance_id)).runtime_status == Status.Running
            clock.advance(timedelta(seconds=1))
            await host.wait_idle()
        status = await host.client.get_status(instance_id, show_history=True)
        assert status.runtime_status == Status.Completed, status.output
        assert status.output == [9, "ok after 3", 16]
        kinds = [event["EventType"] for event in status.historyEvents]
        assert kinds.count("TaskFailed") == 2 and kinds.count("TimerFired") == 2
        # a retried task that succeeded leaves no retry bookkeeping (nor its input) in the saved state
        saved = host.store.load_instance(instance_id).state
        assert saved["retries"] == {} and saved["retry_of"] == {}


async def test_retry_gives_up_after_max_attempts() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(app_path("patterns"), clock=clock) as host:
        spec = {"key": "retry-fail", "succeed_on": 99, "max": 2}
        instance_id = await host.client.start_new("with_retry", None, spec)
        await host.wait_idle()
        for _ in range(2):
            clock.advance(timedelta(seconds=1))
            await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.runtime_status == Status.Failed
        assert "attempt 2 failed" in status.output


async def test_sub_orchestrations_and_child_failure() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        instance_id = await host.client.start_new("parent", "p1")
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.runtime_status == Status.Completed, status.output
        assert status.output[:2] == [14, 30]
        assert "child went wrong" in status.output[2]
        child = await host.client.get_status("p1-b")
        assert child.runtime_status == Status.Completed and child.output == 30


async def test_task_any_work_beats_timer_and_timer_is_cancelled() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(app_path("patterns"), clock=clock) as host:
        instance_id = await host.client.start_new("race")
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.output == {"winner": "work", "value": 49}
        assert host.engine.next_deadline() is None  # the cancelled timer was dropped


async def test_activity_failure_reaches_orchestrator_then_fails_it() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        instance_id = await host.client.start_new("activity_failure")
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.runtime_status == Status.Failed
        assert "ValueError: boom" in status.custom_status["caught"]
        assert status.output.startswith("Orchestrator function 'activity_failure' failed:")
        assert "again" in status.output


async def test_external_event_buffered_before_anyone_waits() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        instance_id = await host.client.start_new("waiter")
        await host.client.raise_event(instance_id, "go", {"answer": 42})  # raised while still Pending
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.output == {"answer": 42}


async def test_custom_status_and_raise_event_to_finished_instance() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        instance_id = await host.client.start_new("waiter")
        await host.wait_idle()
        assert (await host.client.get_status(instance_id)).custom_status == "waiting"
        await host.client.raise_event(instance_id, "go", "yes")
        await host.wait_idle()
        assert (await host.client.get_status(instance_id)).output == "yes"
        with pytest.raises(Exception, match="gone"):
            await host.client.raise_event(instance_id, "go", "again")


async def test_long_timer_is_split_and_still_fires_at_the_right_time() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(app_path("patterns"), clock=clock) as host:
        instance_id = await host.client.start_new("long_sleep")
        await host.wait_idle()
        clock.advance(timedelta(days=3))
        await host.wait_idle()
        clock.advance(timedelta(days=3))
        await host.wait_idle()
        clock.advance(timedelta(days=3, hours=23))
        await host.wait_idle()
        assert (await host.client.get_status(instance_id)).runtime_status == Status.Running
        clock.advance(timedelta(hours=1))
        await host.wait_idle()
        status = await host.client.get_status(instance_id, show_history=True)
        assert status.output == "woke"
        assert [e["EventType"] for e in status.historyEvents].count("TimerFired") >= 3


async def test_continue_as_new_eternal_monitor() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(app_path("monitor"), clock=clock) as host:
        instance_id = await host.client.start_new("monitor", "job-1", {"checks": 0, "done_after": 3})
        await host.wait_idle()
        for _ in range(2):
            status = await host.client.get_status(instance_id)
            assert status.runtime_status in (Status.Running, Status.ContinuedAsNew)
            clock.advance(timedelta(minutes=30))
            await host.wait_idle()
        status = await host.client.get_status(instance_id, show_history=True)
        assert status.runtime_status == Status.Completed
        assert status.output == {"checks": 3}
        assert status.custom_status == {"checks": 3, "status": "done"}
        assert [e["EventType"] for e in status.historyEvents].count("ExecutionStarted") == 1  # history was reset


async def test_determinism_violation_fails_the_instance() -> None:
    # Every episode replays in full here, so code that changed its mind mid-flight is caught at
    # once; with kept replays it is caught at the next full replay (test_replay_cache.py).
    async with EmbeddedHost(app_path("patterns"), replay_cache=0) as host:
        module = next(m for m in sys.modules.values() if getattr(m, "__file__", None) == app_path("patterns"))
        module.FLIP["value"] = False
        instance_id = await host.client.start_new("nondeterministic")
        await host.wait_idle()
        module.FLIP["value"] = True
        try:
            await host.client.raise_event(instance_id, "go", 1)
            await host.wait_idle()
        finally:
            module.FLIP["value"] = False
        status = await host.client.get_status(instance_id)
        assert status.runtime_status == Status.Failed
        assert "Non-deterministic orchestration" in status.output
        assert "CallActivity 'square'" in status.output and "CallActivity 'get_work'" in status.output


async def test_missing_orchestrator_is_a_clean_error() -> None:
    async with EmbeddedHost(app_path("chaining")) as host:
        with pytest.raises(Exception, match="doesn't exist"):
            await host.client.start_new("no_such_orchestrator")


async def test_call_http_is_performed_and_returns_the_extension_shape() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        instance_id = await host.client.start_new("http_caller", None, f"{host.base_url}/api/ping")
        await host.wait_idle()
        for _ in range(100):  # the request goes over real loopback HTTP
            status = await host.client.get_status(instance_id)
            if status.runtime_status == Status.Completed:
                break
            await asyncio.sleep(0.02)
        assert status.output == {"status": 200, "content": "pong"}


async def test_sub_orchestration_with_retry_starts_a_new_child_per_attempt() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(app_path("patterns"), clock=clock) as host:
        instance_id = await host.client.start_new("retry_child_parent", "rcp", {"key": "sub-retry", "succeed_on": 2})
        await host.wait_idle()
        clock.advance(timedelta(milliseconds=500))
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.runtime_status == Status.Completed, status.output
        assert status.output == "ok after 2"
        children = await host.client.get_status_by(instance_id_prefix="rcp:")
        assert sorted(c.runtime_status.value for c in children) == ["Completed", "Failed"]
