"""Entities through the batch protocol and the client management API over the loopback HTTP API."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import azure.durable_functions as df
import pytest

from kernel.engine import EmbeddedHost, VirtualClock

from .conftest import app_path

Status = df.OrchestrationRuntimeStatus


async def test_counter_entity_signals_reads_and_destructs() -> None:
    async with EmbeddedHost(app_path("counter")) as host:
        entity = df.EntityId("counter", "c1")
        assert not (await host.client.read_entity_state(entity)).entity_exists
        for amount in (1, 2, 3):
            await host.client.signal_entity(entity, "add", {"amount": amount})
        await host.wait_idle()
        state = await host.client.read_entity_state(entity)
        assert state.entity_exists and state.entity_state == 6
        await host.client.signal_entity(entity, "delete")
        await host.wait_idle()
        assert not (await host.client.read_entity_state(entity)).entity_exists


async def test_pending_operations_run_as_one_serialized_batch() -> None:
    async with EmbeddedHost(app_path("counter")) as host:
        entity = df.EntityId("Counter", "batch")
        calls = []
        spec = host.index.entities["counter"]
        original = spec.user_function

        def counting(**kwargs):
            calls.append(1)
            return original(**kwargs)

        spec.user_function = counting
        for _ in range(50):  # queued without yielding to the scheduler in between
            host.engine.signal_entity("Counter", "batch", "add", '{"amount": 1}')
        await host.wait_idle()
        spec.user_function = original
        assert (await host.client.read_entity_state(entity)).entity_state == 50
        assert len(calls) == 1


async def test_orchestration_calls_and_signals_entities_and_sees_errors() -> None:
    async with EmbeddedHost(app_path("counter")) as host:
        instance_id = await host.client.start_new("counter_user", None, "shared")
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.runtime_status == Status.Completed, status.output
        assert status.output["after_add"] == 15  # the signal was sent (and served) before the call
        assert status.output["current"] == 15
        assert "counter refuses" in status.output["failed"]


async def test_terminate_suspend_resume_and_purge() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        client = host.client
        a = await client.start_new("waiter", "a")
        b = await client.start_new("waiter", "b")
        await host.wait_idle()
        await client.suspend(a, "hold on")
        await host.wait_idle()
        assert (await client.get_status(a)).runtime_status == Status.Suspended
        await client.raise_event(a, "go", "while suspended")
        await host.wait_idle()
        assert (await client.get_status(a)).runtime_status == Status.Suspended
        await client.resume(a, "carry on")
        await host.wait_idle()
        done = await client.get_status(a)
        assert done.runtime_status == Status.Completed and done.output == "while suspended"
        await client.terminate(b, "no longer needed")
        await host.wait_idle()
        terminated = await client.get_status(b)
        assert terminated.runtime_status == Status.Terminated and terminated.output == "no longer needed"
        result = await client.purge_instance_history(b)
        assert result.instances_deleted == 1
        assert not await client.get_status(b)
        assert (await client.purge_instance_history("never-existed")).instances_deleted == 0


async def test_purging_a_running_instance_is_refused() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        await host.client.start_new("waiter", "busy")
        await host.wait_idle()
        with pytest.raises(Exception):
            await host.client.purge_instance_history("busy")


async def test_duplicate_instance_id_refused_while_active_allowed_after_completion() -> None:
    async with EmbeddedHost(app_path("patterns")) as host:
        await host.client.start_new("waiter", "singleton")
        await host.wait_idle()
        with pytest.raises(Exception, match="already exists"):
            await host.client.start_new("waiter", "singleton")
        await host.client.raise_event("singleton", "go", 1)
        await host.wait_idle()
        await host.client.start_new("waiter", "singleton")  # completed: may be restarted
        await host.wait_idle()
        assert (await host.client.get_status("singleton")).runtime_status == Status.Running


async def test_get_status_by_filters_status_time_and_prefix() -> None:
    clock = VirtualClock(datetime(2031, 5, 1, tzinfo=timezone.utc))
    async with EmbeddedHost(app_path("patterns"), clock=clock) as host:
        client = host.client
        await client.start_new("waiter", "early-1")
        clock.advance(timedelta(hours=1))
        await client.start_new("fan_out_fan_in", "late-1", 2)
        await client.start_new("waiter", "late-2")
        await host.wait_idle()
        running = await client.get_status_by(runtime_status=[Status.Running])
        assert sorted(s.instance_id for s in running) == ["early-1", "late-2"]
        late = await client.get_status_by(created_time_from=datetime(2031, 5, 1, 0, 30, tzinfo=timezone.utc))
        assert sorted(s.instance_id for s in late) == ["late-1", "late-2"]
        early = await client.get_status_by(created_time_to=datetime(2031, 5, 1, 0, 30, tzinfo=timezone.utc))
        assert [s.instance_id for s in early] == ["early-1"]
        prefixed = await client.get_status_by(instance_id_prefix="late-")
        assert len(prefixed) == 2
        assert len(await client.get_status_all()) == 3
        completed = await client.get_status_by(runtime_status=[Status.Completed, Status.Failed])
        assert [s.instance_id for s in completed] == ["late-1"]
        purged = await client.purge_instance_history_by(datetime(2031, 1, 1, tzinfo=timezone.utc),
                                                         runtime_status=[Status.Completed])
        assert purged.instances_deleted == 1


async def test_human_interaction_approved_in_time() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(app_path("human"), clock=clock) as host:
        instance_id = await host.client.start_new("approval", None, {"item": "laptop"})
        await host.wait_idle()
        clock.advance(timedelta(hours=1))
        await host.client.raise_event(instance_id, "Approval", "alice")
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.output == {"outcome": "approved", "by": "alice"}


async def test_human_interaction_times_out_and_escalates() -> None:
    clock = VirtualClock()
    async with EmbeddedHost(app_path("human"), clock=clock) as host:
        instance_id = await host.client.start_new("approval", None, {"item": "car"})
        await host.wait_idle()
        clock.advance(timedelta(hours=71))
        await host.wait_idle()
        assert (await host.client.get_status(instance_id)).runtime_status == Status.Running
        clock.advance(timedelta(hours=1))
        await host.wait_idle()
        status = await host.client.get_status(instance_id)
        assert status.output == {"outcome": "escalated", "note": "escalated car"}


def test_a_batch_through_the_sdk_handle_in_parts_equals_one_through_its_json() -> None:
    """The engine hands the SDK's entity handle the context's parts instead of its JSON: the same
    batch gives the same state and results either way (including a failing operation and a delete)."""
    import dataclasses

    from kernel.engine.entities import run_batch, sdk_entity_handle
    from kernel.engine.indexing import index_app, load_app
    from kernel.engine.settings import Settings

    app, directory = load_app(app_path("counter"))
    spec = index_app(app, directory, Settings({})).entities["counter"]
    assert sdk_entity_handle(spec.user_function)
    as_json = dataclasses.replace(spec, user_function=lambda **kw: spec.user_function(**kw))  # not recognised
    assert not sdk_entity_handle(as_json.user_function)
    for state in (None, "41"):
        requests = [{"op": "add", "input": '{"amount": 2}'}, {"op": "fail"}, {"op": "get"}, {"op": "delete"},
                    {"op": "add", "input": '{"amount": 1}'}]  # inputs as orchestrations send them: JSON text
        fast = run_batch(spec, "@counter@k", state is not None, state, requests)
        slow = run_batch(as_json, "@counter@k", state is not None, state, requests)
        assert (fast.exists, fast.state) == (slow.exists, slow.state)
        assert [(o.is_error, o.result) for o in fast.results] == [(o.is_error, o.result) for o in slow.results]
        assert [o.is_error for o in fast.results] == [False, True, False, False, False]


def test_an_entity_state_kept_parsed_is_used_only_while_the_stored_text_is_what_its_batch_saved() -> None:
    """The engine keeps each entity's last state as the live object between batches: a batch that
    starts from it gives what a batch parsing the stored JSON gives, and a stored text that differs
    (another writer, a rolled-back tick) or a failed batch is never served from it."""
    import dataclasses

    from kernel.engine.entities import ParsedStates, run_batch
    from kernel.engine.indexing import index_app, load_app
    from kernel.engine.settings import Settings

    app, directory = load_app(app_path("counter"))
    spec = index_app(app, directory, Settings({})).entities["counter"]
    as_json = dataclasses.replace(spec, user_function=lambda **kw: spec.user_function(**kw))
    states = ParsedStates(limit=4)
    add = [{"op": "add", "input": '{"amount": 2}'}, {"op": "get"}]
    first = run_batch(spec, "@counter@k", False, None, add, states)
    assert first.state == "2" and states.take("@counter@k", "2") == (True, 2)
    states.put("@counter@k", "2", 2)
    second = run_batch(spec, "@counter@k", True, first.state, add, states)  # starts from the kept 2
    assert (second.state, [o.result for o in second.results]) == ("4", ["4", "4"])
    assert second.state == run_batch(as_json, "@counter@k", True, first.state, add).state
    # the store holds another text than the kept one's: parsed from the store, not the stale object
    stale = run_batch(spec, "@counter@k", True, "10", add, states)
    assert stale.state == "12"
    # an entry is out while its batch runs: a batch that fails as a whole leaves none behind
    states.put("@counter@k", "12", 12)
    broken = run_batch(spec, "@counter@k", True, "12", [{"op": None}], states)
    assert broken.results[0].is_error and states.take("@counter@k", "12") == (False, None)
    # bounded, least recently used first out
    for n in range(6):
        states.put(f"@counter@{n}", "1", 1)
    assert states.take("@counter@0", "1") == (False, None) and states.take("@counter@5", "1") == (True, 1)
