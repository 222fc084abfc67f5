"""A long fan-out whose activities log each run, for the kill-and-resume test."""

import os
import time

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def crunch(context: df.DurableOrchestrationContext):
    count = context.get_input()
    squares = yield context.task_all([context.call_activity("slow_square", n) for n in range(count)])
    total = sum(squares)
    yield context.call_entity(df.EntityId("tally", "main"), "add", {"amount": total})
    return total


@app.activity_trigger(input_name="n")
def slow_square(n: int) -> int:
    time.sleep(0.05)
    with open(os.environ["AOS_TEST_LOG"], "a", encoding="utf-8") as log:
        log.write(f"{n}\n")
    return n * n


@app.entity_trigger(context_name="context")
def tally(context: df.DurableEntityContext):
    value = context.get_state(lambda: 0)
    value += context.get_input()["amount"]
    context.set_state(value)
    context.set_result(value)
