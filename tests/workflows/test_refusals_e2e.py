"""A turn refused before it begins (a retired agent, a full inbox) answers a waiting workflow step at
once with agent.failed, instead of leaving the step to its timeout. End to end on the embedded engine
running the unmodified function_app.py."""

from __future__ import annotations

from pathlib import Path

from kernel.workflows import ids
from tests.realm.platform_support import ok, running
from tests.workflows.support import config_paths, finished, start, steps, write_workflow


async def test_a_step_for_an_agent_that_refuses_at_begin_fails_at_once(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "ask-retired", "steps": [
        {"id": "ask", "agent": "analyst", "event": "analysis.ask", "data": {"q": "figures"},
         "timeout_seconds": 600}]})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        await ok(platform, "POST", "agents/analyst/retire", {"reason": "the test retires it"})
        run_id = await start(platform, "ask-retired", {})
        view = await finished(platform, run_id, timeout=30)  # not the step's 600 s

    ask = steps(view)["ask"]
    assert view["status"] == "failed" and ask["status"] == "failed" and ask["attempts"] == 1
    assert ask["error"] == "agent 'analyst' refused: agent 'analyst' refused the event: agent is retired", ask
    assert ask["history"][0]["outcome"] == "failed"
    assert view["failed_step"] == "ask" and ids.is_run(run_id)
