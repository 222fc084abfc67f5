"""The counter entity, driven by clients and by orchestrations (call and signal)."""

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@app.entity_trigger(context_name="context")
def counter(context: df.DurableEntityContext):
    value = context.get_state(lambda: 0)
    operation = context.operation_name
    if operation == "add":
        value += context.get_input()["amount"]
        context.set_result(value)
    elif operation == "reset":
        value = 0
        context.set_result(None)
    elif operation == "get":
        context.set_result(value)
    elif operation == "fail":
        raise ValueError("counter refuses")
    elif operation == "delete":
        context.set_result(None)  # before destruct: set_result marks the entity as existing again
        context.destruct_on_exit()
        return
    context.set_state(value)


@app.orchestration_trigger(context_name="context")
def counter_user(context: df.DurableOrchestrationContext):
    entity = df.EntityId("counter", context.get_input())
    context.signal_entity(entity, "add", {"amount": 10})
    after_add = yield context.call_entity(entity, "add", {"amount": 5})
    current = yield context.call_entity(entity, "get")
    try:
        yield context.call_entity(entity, "fail")
        failed = None
    except Exception as error:
        failed = str(error)
    return {"after_add": after_add, "current": current, "failed": failed}
