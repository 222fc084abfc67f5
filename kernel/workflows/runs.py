"""Starting runs and the runs index.

A run starts from the API, from a trigger event or from a schedule occurrence; each way derives
the run id (``kernel.workflows.ids``) and starts the orchestration at most once. The input is
checked against the workflow's ``inputs`` JSON Schema first, so a bad input is refused with the
path and the reason instead of failing a step later.

The index (table ``workflowruns``, one partition, RowKey = inverted start time + run id, so a
partition scan is newest first) lists runs without querying every orchestration instance of the
task hub; the run itself, with its steps, is the orchestration's status.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from kernel.config.loader import ConfigSet
from kernel.instances import runtime_status, start_once
from kernel.ports import TableStore
from kernel.workflows.models import WorkflowConfig
from kernel.workflows.orchestration import ORCHESTRATOR

TABLE = "workflowruns"
PARTITION = "runs"
_ORDER_BASE = 10**13


class InvalidInput(ValueError):
    """The input does not fit the workflow's ``inputs`` schema (the message names where and why)."""


class UnknownWorkflow(LookupError):
    pass


class DisabledWorkflow(RuntimeError):
    pass


def check_input(workflow: WorkflowConfig, value: Any) -> None:
    import jsonschema  # on first use: importing it with the app costs every cold start ~0.1 s

    validator = jsonschema.Draft202012Validator(workflow.inputs)
    errors = sorted(validator.iter_errors(value), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = "input" + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first.absolute_path)
        more = f" (and {len(errors) - 1} more problem(s))" if len(errors) > 1 else ""
        raise InvalidInput(f"{where}: {first.message}{more}")


def index_key(created: datetime, run_id: str) -> str:
    return f"{_ORDER_BASE - int(created.timestamp() * 1000):013d}-{run_id}"


def workflow_for(configs: ConfigSet, address: str) -> WorkflowConfig:
    workflow = configs.workflows.get(address)
    if workflow is None:
        raise UnknownWorkflow(f"no workflow '{address}' is declared in config")
    return workflow


def payload(configs: ConfigSet, address: str, value: Any, *, run_id: str, trigger: dict[str, Any],
            created: datetime) -> dict[str, Any]:
    """The orchestration's input: the workflow as it is now (so a config change does not touch the run)."""
    workflow = workflow_for(configs, address)
    if not workflow.enabled:
        raise DisabledWorkflow(f"workflow '{address}' is disabled (enabled: false)")
    check_input(workflow, value)
    return {"workflow": workflow.model_dump(mode="json", by_alias=True), "address": address,
            "version": configs.source("workflow", address).version, "input": value, "trigger": trigger,
            "index_key": index_key(created, run_id), "created": created.isoformat()}


async def start(client: Any, runs: RunIndex, configs: ConfigSet, address: str, value: Any, *, run_id: str,
                trigger: dict[str, Any], created: datetime | None = None) -> bool:
    """Start the run unless it exists; True when this call started it. Raises InvalidInput,
    UnknownWorkflow or DisabledWorkflow before anything starts."""
    created = created or datetime.now(UTC)
    request = payload(configs, address, value, run_id=run_id, trigger=trigger, created=created)
    if runtime_status(await client.get_status(run_id)) is not None:
        return False
    await runs.record({"key": request["index_key"], "run_id": run_id, "workflow": address, "status": "pending",
                       "started": created.isoformat()})
    return await start_once(client, ORCHESTRATOR, run_id, request, known_absent=True)


class RunIndex:
    """Rows of table ``workflowruns``: one per run, newest first."""

    def __init__(self, tables: TableStore) -> None:
        self._tables = tables

    async def record(self, row: dict[str, Any]) -> None:
        if not row.get("key"):
            return
        entity = {"PartitionKey": PARTITION, "RowKey": row["key"],
                  **{k: v for k, v in row.items() if k != "key" and v is not None}}
        await self._tables.upsert(TABLE, entity)

    async def recent(self, *, limit: int = 50, workflow: str | None = None,
                     keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """The newest ``limit`` rows, of ``workflow`` only when given, and only those ``keep`` accepts
        (the caller's namespaces)."""
        rows = await self._tables.query(TABLE, PARTITION, limit=None if workflow or keep else limit)
        found = [{k: v for k, v in row.items() if k not in ("PartitionKey", "RowKey", "etag", "Timestamp")}
                 for row in rows if (workflow is None or row.get("workflow") == workflow)
                 and (keep is None or keep(row))]
        return found[:limit]
