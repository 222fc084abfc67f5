"""Service Bus and timer triggers: a topic trigger starting orchestrations, a poison queue,
SQL-filtered subscriptions, output bindings and a schedule."""

import json
import logging

import azure.durable_functions as df
import azure.functions as func

app = df.DFApp(http_auth_level=func.AuthLevel.ANONYMOUS)

SEEN: list[dict] = []
TICKS: list[bool] = []


@app.service_bus_topic_trigger(arg_name="msg", topic_name="%EVENTS_TOPIC%", subscription_name="starter",
                               connection="ServiceBusConnection")
@app.durable_client_input(client_name="client")
async def on_event(msg: func.ServiceBusMessage, client: df.DurableOrchestrationClient) -> None:
    event = json.loads(msg.get_body())
    SEEN.append({"id": msg.message_id, "delivery_count": msg.delivery_count, "subject": msg.subject,
                 "props": msg.application_properties, "correlation_id": msg.correlation_id})
    await client.start_new("handle_event", f"event-{msg.message_id}", event)


@app.orchestration_trigger(context_name="context")
def handle_event(context: df.DurableOrchestrationContext):
    event = context.get_input()
    return (yield context.call_activity("publish", event))


@app.activity_trigger(input_name="event")
@app.service_bus_queue_output(arg_name="out", queue_name="outbox", connection="ServiceBusConnection")
def publish(event: dict, out: func.Out[str]) -> str:
    out.set(json.dumps({"handled": event["kind"]}))
    return f"handled {event['kind']}"


@app.service_bus_queue_trigger(arg_name="msg", queue_name="outbox", connection="ServiceBusConnection")
def outbox_reader(msg: func.ServiceBusMessage) -> None:
    SEEN.append({"outbox": json.loads(msg.get_body())})


@app.service_bus_queue_trigger(arg_name="msg", queue_name="poison", connection="ServiceBusConnection")
def always_fails(msg: func.ServiceBusMessage) -> None:
    SEEN.append({"poison_attempt": msg.delivery_count})
    raise RuntimeError("cannot handle this")


@app.service_bus_topic_trigger(arg_name="batch", topic_name="%EVENTS_TOPIC%", subscription_name="urgent",
                               connection="ServiceBusConnection", cardinality="many")
def urgent(batch: list[func.ServiceBusMessage]) -> None:
    SEEN.append({"urgent": [json.loads(m.get_body())["kind"] for m in batch]})


@app.timer_trigger(arg_name="timer", schedule="%TICK_SCHEDULE%", run_on_startup=False)
def tick(timer: func.TimerRequest) -> None:
    logging.info("tick past_due=%s", timer.past_due)
    TICKS.append(timer.past_due)
