"""Human interaction with a timeout (approve in time, or escalate when the timer wins)."""

from datetime import timedelta

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.orchestration_trigger(context_name="context")
def approval(context: df.DurableOrchestrationContext):
    yield context.call_activity("request_approval", context.get_input())
    deadline = context.current_utc_datetime + timedelta(hours=72)
    timeout = context.create_timer(deadline)
    approved = context.wait_for_external_event("Approval")
    winner = yield context.task_any([approved, timeout])
    if winner == approved:
        timeout.cancel()
        return {"outcome": "approved", "by": approved.result}
    escalation = yield context.call_activity("escalate", context.get_input())
    return {"outcome": "escalated", "note": escalation}


@app.activity_trigger(input_name="request")
def request_approval(request: dict) -> str:
    return f"asked for {request['item']}"


@app.activity_trigger(input_name="request")
def escalate(request: dict) -> str:
    return f"escalated {request['item']}"
