"""Fan-out/fan-in, retries, sub-orchestrations, task_any, failures and a determinism trap."""

from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

ATTEMPTS: dict[str, int] = {}
FLIP = {"value": False}


@app.orchestration_trigger(context_name="context")
def fan_out_fan_in(context: df.DurableOrchestrationContext):
    count = context.get_input() or 5
    work = yield context.call_activity("get_work", count)
    results = yield context.task_all([context.call_activity("square", n) for n in work])
    return sum(results)


@app.activity_trigger(input_name="count")
def get_work(count: int) -> list:
    return list(range(1, count + 1))


@app.activity_trigger(input_name="n")
def square(n: int) -> int:
    return n * n


@app.orchestration_trigger(context_name="context")
def with_retry(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=1000, max_number_of_attempts=spec["max"])
    before = yield context.call_activity("square", 3)
    value = yield context.call_activity_with_retry("flaky", options, spec)
    after = yield context.call_activity("square", 4)
    return [before, value, after]


@app.activity_trigger(input_name="spec")
def flaky(spec: dict) -> str:
    key = spec["key"]
    ATTEMPTS[key] = ATTEMPTS.get(key, 0) + 1
    if ATTEMPTS[key] < spec["succeed_on"]:
        raise ValueError(f"attempt {ATTEMPTS[key]} failed")
    return f"ok after {ATTEMPTS[key]}"


@app.orchestration_trigger(context_name="context")
def parent(context: df.DurableOrchestrationContext):
    child_a = context.call_sub_orchestrator("fan_out_fan_in", 3)
    child_b = context.call_sub_orchestrator("fan_out_fan_in", 4, instance_id=f"{context.instance_id}-b")
    results = yield context.task_all([child_a, child_b])
    try:
        yield context.call_sub_orchestrator("failing", "x")
    except Exception as error:  # the child's failure reaches the parent as an exception
        results.append(str(error)[:60])
    return results


@app.orchestration_trigger(context_name="context")
def failing(context: df.DurableOrchestrationContext):
    yield context.call_activity("square", 2)
    raise RuntimeError("child went wrong")


@app.orchestration_trigger(context_name="context")
def race(context: df.DurableOrchestrationContext):
    deadline = context.current_utc_datetime + timedelta(minutes=5)
    timer = context.create_timer(deadline)
    work = context.call_activity("square", 7)
    winner = yield context.task_any([work, timer])
    if winner == work:
        timer.cancel()
        return {"winner": "work", "value": work.result}
    return {"winner": "timer"}


@app.orchestration_trigger(context_name="context")
def activity_failure(context: df.DurableOrchestrationContext):
    try:
        yield context.call_activity("explode", "boom")
    except Exception as error:
        context.set_custom_status({"caught": str(error)[:80]})
    yield context.call_activity("explode", "again")
    return "unreachable"


@app.activity_trigger(input_name="message")
def explode(message: str) -> str:
    raise ValueError(message)


@app.orchestration_trigger(context_name="context")
def nondeterministic(context: df.DurableOrchestrationContext):
    first = "square" if not FLIP["value"] else "get_work"
    yield context.call_activity(first, 2)
    yield context.wait_for_external_event("go")
    return "done"


@app.orchestration_trigger(context_name="context")
def waiter(context: df.DurableOrchestrationContext):
    context.set_custom_status("waiting")
    value = yield context.wait_for_external_event("go")
    return value


@app.orchestration_trigger(context_name="context")
def long_sleep(context: df.DurableOrchestrationContext):
    yield context.create_timer(context.current_utc_datetime + timedelta(days=10))
    return "woke"


@app.orchestration_trigger(context_name="context")
def http_caller(context: df.DurableOrchestrationContext):
    response = yield context.call_http("GET", context.get_input())
    return {"status": response["statusCode"], "content": response["content"]}


@app.route(route="ping", methods=["GET"])
def ping(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse("pong")


@app.orchestration_trigger(context_name="context")
def retry_child_parent(context: df.DurableOrchestrationContext):
    spec = context.get_input()
    options = df.RetryOptions(first_retry_interval_in_milliseconds=500, max_number_of_attempts=3)
    value = yield context.call_sub_orchestrator_with_retry("flaky_child", options, spec)
    return value


@app.orchestration_trigger(context_name="context")
def flaky_child(context: df.DurableOrchestrationContext):
    return (yield context.call_activity("flaky", context.get_input()))
