"""The quarterly-review sample over the sample agents, on the embedded default (`aos run`)."""

from __future__ import annotations

from pathlib import Path

from tests.realm.platform_support import ok, requires_mcp_servers, running
from tests.workflows.support import finished, start, step_status, steps


@requires_mcp_servers
async def test_the_quarterly_review_runs_on_the_sample_agents_and_is_signed_off(tmp_path: Path) -> None:
    async with running(tmp_path / "state") as platform:
        run_id = await start(platform, "quarterly-review", {"quarter": "Q3-2026"})
        waiting = await step_status(platform, run_id, "sign-off", "running", timeout=60)
        await ok(platform, "POST", f"workflows/runs/{run_id}/steps/sign-off/approval",
                 {"approve": True, "by": "board", "reason": "agreed"})
        view = await finished(platform, run_id, timeout=90)
    by_id = steps(view)
    assert view["status"] == "completed", view.get("error")
    assert [by_id[s]["status"] for s in ("finance", "technology", "operations", "decision", "sign-off", "record",
                                          "execute")] == ["completed"] * 7
    assert by_id["declined"]["status"] == "skipped"
    assert by_id["technology"]["started"] == by_id["operations"]["started"]  # assessed in parallel
    assert [by_id[s]["output"]["agent"] for s in ("finance", "technology", "operations", "decision", "execute")] == [
        "cfo", "cto", "coo", "ceo", "operations"]
    assert steps(waiting)["sign-off"]["waiting"]["prompt"].startswith("Approve the Q3-2026 plan? The CEO decided:")
    assert "plan Q3-2026" in by_id["record"]["output"]["text"]
    assert view["output"]["approved"] is True and view["output"]["executed"] == "completed"
