"""An eternal monitor: poll, sleep, continue_as_new until the job is done."""

from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def monitor(context: df.DurableOrchestrationContext):
    state = context.get_input()
    status = yield context.call_activity("check_job", state)
    context.set_custom_status({"checks": state["checks"] + 1, "status": status})
    if status == "done":
        return {"checks": state["checks"] + 1}
    yield context.create_timer(context.current_utc_datetime + timedelta(minutes=30))
    context.continue_as_new({"checks": state["checks"] + 1, "done_after": state["done_after"]})


@app.activity_trigger(input_name="state")
def check_job(state: dict) -> str:
    return "done" if state["checks"] + 1 >= state["done_after"] else "running"
