"""Helpers for the workflow tests: a platform over the test agents and a workflow written by the test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from kernel.platform import Platform
from tests.realm.platform_support import ok, wait_until

CONFIGS = Path(__file__).resolve().parent / "configs"
REPO = Path(__file__).resolve().parents[2]
FINISHED = ("completed", "failed", "cancelled", "error", "terminated")


def write_workflow(folder: Path, document: dict[str, Any]) -> Path:
    """A workflow config file in ``folder`` (JSON; the loader reads the kind from the document)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{document['id']}.json"
    path.write_text(json.dumps({"kind": "workflow", **document}, indent=2))
    return path


def config_paths(*extra: Path) -> str:
    return ",".join([str(CONFIGS / "analyst.yaml"), str(CONFIGS / "reviewer.yaml"), *map(str, extra)])


async def start(platform: Platform, workflow: str, value: Any) -> str:
    answer = await ok(platform, "POST", f"workflows/{workflow}/start", {"input": value}, 202)
    return str(answer["run_id"])


async def run_view(platform: Platform, run_id: str) -> dict[str, Any]:
    return await ok(platform, "GET", f"workflows/runs/{run_id}")


async def finished(platform: Platform, run_id: str, timeout: float = 60.0) -> dict[str, Any]:
    async def done() -> dict[str, Any] | None:
        view = await run_view(platform, run_id)
        return view if view.get("status") in FINISHED else None

    return await wait_until(done, timeout=timeout, interval=0.1, what=f"run {run_id} to finish")


async def step_status(platform: Platform, run_id: str, step: str, status: str, timeout: float = 30.0) -> dict[str, Any]:
    async def reached() -> dict[str, Any] | None:
        view = await run_view(platform, run_id)
        found = next((s for s in view.get("steps", []) if s["id"] == step), None)
        return view if found is not None and found["status"] == status else None

    return await wait_until(reached, timeout=timeout, interval=0.1, what=f"step {step} of {run_id} to be {status}")


def steps(view: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {step["id"]: step for step in view["steps"]}
