"""The run's activities: send an agent step's event (unless the workflow's namespace may no longer
reach the agent), send a tool step's MCP request, index the run; and the schedule's: start the run
of an occurrence.

Each send uses the attempt's id as the message id, so a re-run activity (at-least-once) sends a
duplicate the turn path and the gateway recognise: the agent's turn id derives from the event id,
and the gateway keeps one result per call id.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from kernel import namespaces as ns
from kernel import runtime
from kernel.config.store import default_store
from kernel.governance.audit import AuditLog
from kernel.messages import Envelope
from kernel.outputs import ROUTE_REFUSED
from kernel.ports import OutboundMessage
from kernel.toolbus import ToolRequest
from kernel.topology import AGENT_EVENTS, MCP_REQUESTS
from kernel.workflows import ids, reach
from kernel.workflows.runs import DisabledWorkflow, InvalidInput, RunIndex, start

log = logging.getLogger("aos.workflows")


async def send_agent_event(request: dict[str, Any]) -> str | dict[str, str]:
    """The agent step's event on agent-events (the normal turn path); returns its id, or
    ``{"refused": why}`` when the workflow's namespace may no longer reach the agent (a route
    withdrawn since the run started: the configs are read now, and the refusal is audited)."""
    envelope = Envelope.model_validate(request["envelope"])
    workflow = request.get("workflow")
    if workflow and envelope.to:
        namespace = ns.namespace_of(workflow)
        why = reach.refusal(default_store().current().namespaces, namespace, "agents", envelope.to)
        if why is not None:
            reason = f"workflow '{workflow}' may not send '{envelope.type}' to agent '{envelope.to}': {why}"
            await _audit_refusal(ids.caller(workflow), namespace, envelope, reason)
            return {"refused": reason}
    await runtime.adapters().sender.send(AGENT_EVENTS, [OutboundMessage.from_envelope(envelope)])
    return envelope.id


async def _audit_refusal(chain: str, namespace: str, envelope: Envelope, reason: str) -> None:
    """``route.refused`` on the workflow's chain (the one its tool calls are audited on); an audit
    outage is logged and the refusal stands."""
    try:
        await AuditLog(runtime.adapters().tables).append(
            chain, ROUTE_REFUSED, actor=f"namespace:{namespace}", subject=envelope.to,
            data={"event_id": envelope.id, "type": envelope.type, "to": envelope.to, "reason": reason})
    except Exception as error:  # noqa: BLE001 - storage errors of any adapter
        log.error("audit record %s for %s could not be written: %s", ROUTE_REFUSED, envelope.id, type(error).__name__)


async def send_tool_request(request: dict[str, Any]) -> str:
    """The tool step's request to the MCP gateway on mcp-requests, with the workflow as the caller."""
    tool_request = ToolRequest.model_validate(request["request"])
    await runtime.adapters().sender.send(MCP_REQUESTS, [OutboundMessage.from_envelope(tool_request.envelope())])
    return tool_request.call_id


async def index_run(row: dict[str, Any]) -> None:
    await RunIndex(runtime.adapters().tables).record(row)


async def fire_schedule(request: dict[str, Any], client: Any) -> bool:
    """Start the run of one schedule occurrence (once); False when the schedule is no longer the
    workflow's (removed or changed: its orchestration ends, a new one replaces it)."""
    from kernel.workflows.schedules import fingerprint

    address = request["workflow"]
    configs = default_store().current()
    workflow = configs.workflows.get(address)
    if workflow is None or workflow.trigger is None or fingerprint(workflow) != request["fingerprint"]:
        return False
    fire_time = datetime.fromisoformat(request["fire_time"])
    run_id = ids.scheduled_run_id(address, fire_time)
    try:
        await start(client, RunIndex(runtime.adapters().tables), configs, address, dict(workflow.trigger.input),
                    run_id=run_id, trigger={"kind": "schedule", "cron": workflow.trigger.schedule,
                                            "fire_time": request["fire_time"]}, created=fire_time)
    except (InvalidInput, DisabledWorkflow) as error:
        log.error("scheduled run %s of %s not started: %s", run_id, address, error)
    return True
