"""An orchestration that counts how often its code starts (once per full replay), with entity calls,
a retried activity, a timer raced against an event, custom status and a sub-orchestration."""

from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

STARTS: dict[str, int] = {}
ATTEMPTS: dict[str, int] = {}
FLIP = {"value": False}


@app.orchestration_trigger(context_name="context")
def workflow(context: df.DurableOrchestrationContext):
    STARTS[context.instance_id] = STARTS.get(context.instance_id, 0) + 1
    key = context.get_input()
    entity = df.EntityId("tally", key)
    context.signal_entity(entity, "add", 1)
    total = yield context.call_entity(entity, "add", 2)
    context.set_custom_status({"total": total})
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=3)
    flaky = yield context.call_activity_with_retry("flaky", options, key)
    parts = yield context.task_all([context.call_activity("double", n) for n in range(3)])
    child = yield context.call_sub_orchestrator("child", total)
    timer = context.create_timer(context.current_utc_datetime + timedelta(hours=1))
    event = context.wait_for_external_event("go")
    winner = yield context.task_any([event, timer])
    if winner == event:
        timer.cancel()
    late = yield context.wait_for_external_event("late")
    return {"total": total, "flaky": flaky, "parts": parts, "child": child,
            "event": event.result if winner == event else None, "late": late, "uuid": str(context.new_uuid())}


@app.orchestration_trigger(context_name="context")
def child(context: df.DurableOrchestrationContext):
    value = yield context.call_activity("double", context.get_input())
    return value + 1


@app.orchestration_trigger(context_name="context")
def flip_flop(context: df.DurableOrchestrationContext):
    STARTS[context.instance_id] = STARTS.get(context.instance_id, 0) + 1
    yield context.call_activity("double" if not FLIP["value"] else "flaky", 1)
    yield context.wait_for_external_event("go")
    return "done"


@app.entity_trigger(context_name="context")
def tally(context: df.DurableEntityContext):
    value = context.get_state(lambda: 0) + (context.get_input() or 0)
    context.set_state(value)
    context.set_result(value)


@app.activity_trigger(input_name="key")
def flaky(key: str) -> str:
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] < 2:
        raise ValueError("first attempt fails")
    return f"ok after {ATTEMPTS[key]}"


@app.activity_trigger(input_name="n")
def double(n: int) -> int:
    return 2 * n
