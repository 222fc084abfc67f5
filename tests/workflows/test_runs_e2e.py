"""Workflow runs end to end: the unmodified function_app.py on the embedded engine, real agent turns
(offline provider), the real outputs router, durable timers on the real clock (short deadlines)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from kernel.cli import main as aos
from kernel.messages import Envelope
from kernel.workflows import ids
from realm_of_agents.ids import turn_instance_id
from tests.inference.fake_openai import FakeOpenAI
from tests.realm.platform_support import (
    archived_turn,
    deadletters,
    ok,
    running,
    wait_until,
)
from tests.workflows.support import (
    config_paths,
    finished,
    start,
    step_status,
    steps,
    write_workflow,
)


def _agent(step_id: str, agent: str, event: str, data: object = None, **extra: object) -> dict:
    return {"id": step_id, "agent": agent, "event": event, "data": data if data is not None else {}, **extra}


async def test_a_parallel_dag_completes_with_each_step_fed_by_its_upstream_outputs(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "dag", "steps": [
        _agent("gather", "analyst", "analysis.start", {"topic": "{{ input.topic }}", "n": "{{ input.n }}"}),
        _agent("left", "reviewer", "review.left", {"seen": "{{ steps.gather.output.text }}"}, needs=["gather"]),
        _agent("right", "reviewer", "review.right", {"n": "{{ input.n }}"}, needs=["gather"]),
        _agent("join", "analyst", "analysis.final", {"left": "{{ steps.left.output.turn_id }}",
                                                     "right": "{{ steps.right.output.turn_id }}"},
               needs=["left", "right"])],
        "output": {"topic": "{{ input.topic }}", "left": "{{ steps.left.output.agent }}",
                   "join": "{{ steps.join.status }}", "n": "{{ input.n }}"}})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        run_id = await start(platform, "dag", {"topic": "figures", "n": 7})
        view = await finished(platform, run_id)
        by_id = steps(view)
        join_turn = await archived_turn(platform, "analyst", by_id["join"]["output"]["turn_id"])

    assert view["status"] == "completed" and view["error"] is None
    assert view["output"] == {"topic": "figures", "left": "reviewer", "join": "completed", "n": 7}
    assert [s["id"] for s in view["steps"]] == ["gather", "left", "right", "join"]
    assert all(s["status"] == "completed" and s["attempts"] == 1 for s in view["steps"])
    # the two branches started together, as soon as their need finished; the join after both
    assert by_id["left"]["started"] == by_id["right"]["started"] == by_id["gather"]["finished"]
    assert by_id["join"]["started"] == max(by_id["left"]["finished"], by_id["right"]["finished"])
    # whole-value templates keep their JSON type; each step saw its upstream's real output
    assert by_id["right"]["input"] == {"n": 7}
    assert by_id["left"]["input"]["seen"] == by_id["gather"]["output"]["text"]
    assert by_id["gather"]["output"]["text"].startswith("[offline]")
    assert join_turn["event"]["data"] == {"left": by_id["left"]["output"]["turn_id"],
                                          "right": by_id["right"]["output"]["turn_id"]}
    assert join_turn["event"]["source"] == ids.source(run_id) and join_turn["event"]["reply_to"] == "agent-outputs"


async def test_a_step_that_fails_after_its_retries_compensates_completed_steps_in_reverse_order(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "undo", "steps": [
        _agent("first", "analyst", "analysis.first", {"what": "first analysis"},
               compensate={"agent": "analyst", "event": "analysis.undo", "data": {"undo": "{{ steps.first.output.turn_id }}"}}),
        _agent("second", "reviewer", "review.second", {"what": "second review"}, needs=["first"],
               compensate={"agent": "reviewer", "event": "review.undo", "data": {"undo": "second"}}),
        # the analyst declines pricing (out of scope): a reply that fails the step, twice
        _agent("pricing", "analyst", "analysis.pricing", {"pricing": "pricing"}, needs=["second"],
               retry={"max_attempts": 2, "backoff_seconds": 0.2}),
        _agent("never", "analyst", "analysis.never", needs=["pricing"])]})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        run_id = await start(platform, "undo", {})
        view = await finished(platform, run_id)
    by_id = steps(view)
    assert view["status"] == "failed" and view["failed_step"] == "pricing"
    assert "agent 'analyst' declined" in view["error"] and "pricing" in view["error"]
    assert by_id["pricing"]["status"] == "failed" and by_id["pricing"]["attempts"] == 2
    assert [h["outcome"] for h in by_id["pricing"]["history"]] == ["failed", "failed"]
    assert by_id["never"]["status"] == "not_run"
    assert view["compensated"] == ["second", "first"]
    assert by_id["first"]["status"] == by_id["second"]["status"] == "compensated"
    assert by_id["second"]["compensation"]["finished"] <= by_id["first"]["compensation"]["started"]
    assert by_id["first"]["compensation"]["input"] == {"undo": by_id["first"]["output"]["turn_id"]}
    assert by_id["first"]["compensation"]["output"]["text"].startswith("[offline]")



async def test_a_compensation_is_retried_with_new_ids_and_a_failed_one_does_not_stop_the_others(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "undo-retry", "steps": [
        _agent("first", "reviewer", "review.first", {"what": "first review"},
               compensate={"agent": "reviewer", "event": "review.undo", "data": {"undo": "first"}}),
        # the analyst declines pricing (out of scope): each attempt of this compensation fails
        _agent("second", "analyst", "analysis.second", {"what": "second analysis"}, needs=["first"],
               compensate={"agent": "analyst", "event": "analysis.pricing", "data": {"pricing": "pricing"},
                           "retry": {"max_attempts": 3, "backoff_seconds": 0.2, "backoff_coefficient": 1.5}}),
        _agent("pricing", "analyst", "analysis.pricing", {"pricing": "pricing"}, needs=["second"])]})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        run_id = await start(platform, "undo-retry", {})
        view = await finished(platform, run_id)
    by_id = steps(view)
    assert view["status"] == "failed" and view["failed_step"] == "pricing"
    undo = by_id["second"]["compensation"]
    assert by_id["second"]["status"] == "completed" and undo["status"] == "failed" and undo["attempts"] == 3
    assert [attempt["id"] for attempt in undo["history"]] == [
        ids.compensation_id(run_id, "second"), f"{run_id}:second:undo:2", f"{run_id}:second:undo:3"]
    assert all(attempt["status"] == "failed" and attempt["error"].startswith("Declined: the event is about 'pricing'")
               for attempt in undo["history"])
    waits = [datetime.fromisoformat(later["started"]) - datetime.fromisoformat(earlier["finished"])
             for earlier, later in zip(undo["history"], undo["history"][1:], strict=False)]
    assert waits[0] >= timedelta(seconds=0.2) and waits[1] >= timedelta(seconds=0.3)  # the back-off, growing
    assert view["compensated"] == ["first"] and by_id["first"]["status"] == "compensated"
    assert by_id["first"]["compensation"]["attempts"] == 1


APPROVAL_FLOW = {"id": "gate", "steps": [
    _agent("draft", "analyst", "analysis.draft", {"draft": "{{ input.plan }}"}),
    {"id": "sign-off", "needs": ["draft"], "timeout_seconds": 3,
     "approval": {"prompt": "Approve {{ input.plan }}? {{ steps.draft.output.text }}"}},
    _agent("go", "reviewer", "review.go", {"by": "{{ steps.sign-off.output.by }}"}, needs=["sign-off"],
           when={"equals": ["{{ steps.sign-off.output.approved }}", True]}),
    _agent("after-go", "reviewer", "review.after", needs=["go"]),
    _agent("stop", "analyst", "analysis.revise", {"reason": "{{ steps.sign-off.output.reason }}"}, needs=["sign-off"],
           when={"not": {"equals": ["{{ steps.sign-off.output.approved }}", True]}})],
    "output": {"approved": "{{ steps.sign-off.output.approved }}", "go": "{{ steps.go.output.text }}"}}


async def test_an_approval_answered_in_time_continues_and_a_missed_deadline_takes_the_declined_branch(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", APPROVAL_FLOW)
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        answered = await start(platform, "gate", {"plan": "plan A"})
        ignored = await start(platform, "gate", {"plan": "plan B"})
        waiting = await step_status(platform, answered, "sign-off", "running")
        sign_off = steps(waiting)["sign-off"]
        assert sign_off["waiting"]["prompt"].startswith("Approve plan A? [offline]")
        decision = await ok(platform, "POST", f"workflows/runs/{answered}/steps/sign-off/approval",
                            {"approve": True, "by": "dana", "reason": "numbers check out"})
        assert decision["approved"] is True
        yes = await finished(platform, answered)
        no = await finished(platform, ignored, timeout=30)
        late, _ = await platform.api("POST", f"workflows/runs/{ignored}/steps/sign-off/approval", {"approve": True})
    approved = steps(yes)
    assert yes["status"] == "completed" and yes["output"]["approved"] is True
    assert approved["sign-off"]["output"]["by"] == "dana"
    assert approved["go"]["status"] == "completed" and approved["go"]["input"] == {"by": "dana"}
    assert approved["after-go"]["status"] == "completed" and approved["stop"]["status"] == "skipped"

    declined = steps(no)
    assert no["status"] == "completed" and no["output"] == {"approved": False, "go": None}
    assert declined["sign-off"]["output"]["approved"] is False and declined["sign-off"]["output"]["by"] == "deadline"
    assert declined["go"]["status"] == "skipped" and declined["after-go"]["status"] == "skipped"
    assert "skipped" in declined["after-go"]["reason"]
    assert declined["stop"]["status"] == "completed"
    assert declined["stop"]["input"] == {"reason": "no decision within 3 s"}
    assert late == 409


async def test_cancel_stops_the_run_and_compensates_what_was_done(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "cancelme", "steps": [
        _agent("book", "analyst", "analysis.book", {"what": "booking analysis"},
               compensate={"agent": "analyst", "event": "analysis.unbook", "data": {"undo": "booking"}}),
        {"id": "hold", "needs": ["book"], "wait": {"event": "payment.settled"}, "timeout_seconds": 600},
        _agent("ship", "reviewer", "review.ship", needs=["hold"])]})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        run_id = await start(platform, "cancelme", {})
        await step_status(platform, run_id, "hold", "running")
        await ok(platform, "POST", f"workflows/runs/{run_id}/cancel", {"reason": "customer withdrew"}, 202)
        view = await finished(platform, run_id)
        again, _ = await platform.api("POST", f"workflows/runs/{run_id}/cancel", {})
    by_id = steps(view)
    assert view["status"] == "cancelled" and view["cancelled"]["reason"] == "customer withdrew"
    assert view["compensated"] == ["book"] and by_id["book"]["compensation"]["status"] == "completed"
    assert by_id["hold"]["status"] == "cancelled" and by_id["ship"]["status"] == "cancelled"
    assert again == 409


async def test_a_wait_step_continues_with_the_raised_event_and_bad_requests_are_refused(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "waiter", "inputs": {
        "type": "object", "required": ["order"], "properties": {"order": {"type": "integer"}}}, "steps": [
        {"id": "paid", "wait": {"event": "payment.settled"}, "timeout_seconds": 600},
        _agent("confirm", "reviewer", "review.confirm", {"amount": "{{ steps.paid.output.data.amount }}"},
               needs=["paid"])]})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        bad_input = await platform.api("POST", "workflows/waiter/start", {"input": {"order": "seven"}})
        unknown = await platform.api("POST", "workflows/nope/start", {"input": {}})
        run_id = await start(platform, "waiter", {"order": 7})
        await step_status(platform, run_id, "paid", "running")
        wrong = await platform.api("POST", f"workflows/runs/{run_id}/events/other.event", {"data": {}})
        await ok(platform, "POST", f"workflows/runs/{run_id}/events/payment.settled", {"data": {"amount": 120}}, 202)
        view = await finished(platform, run_id)
        listed = await ok(platform, "GET", "workflows/runs?workflow=waiter")
    assert bad_input[0] == 400 and "input.order: 'seven' is not of type 'integer'" in bad_input[1]["error"]
    assert unknown[0] == 404 and "no workflow 'nope'" in unknown[1]["error"]
    assert wrong[0] == 409
    assert view["status"] == "completed" and steps(view)["confirm"]["input"] == {"amount": 120}
    assert [row["run_id"] for row in listed["runs"]] == [run_id] and listed["runs"][0]["status"] == "completed"


async def test_a_broadcast_event_of_the_trigger_type_starts_one_run_with_its_data(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "on-close", "trigger": {"events": ["books.closed"]},
                                          "inputs": {"type": "object", "required": ["month"]},
                                          "steps": [_agent("sum", "analyst", "analysis.month", {"m": "{{ input.month }}"})]})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        event = Envelope(id="close-2026-10", type="books.closed", source="ledger", data={"month": "2026-10"})
        for _ in range(2):  # a redelivered event starts nothing new
            await platform.host.send("agent-events", event.to_json(), message_id=event.id, subject=event.type)
        bad = Envelope(id="close-bad", type="books.closed", source="ledger", data={"year": 2026})
        await platform.host.send("agent-events", bad.to_json(), message_id=bad.id, subject=bad.type)
        run_id = ids.event_run_id("on-close", event.id)
        view = await wait_until(lambda: _finished_or_none(platform, run_id), timeout=30, what="the triggered run")
        await platform.wait_idle()
        runs = await ok(platform, "GET", "workflows/runs")
        dead = await deadletters(platform)
    assert view["status"] == "completed" and view["input"] == {"month": "2026-10"}
    assert view["trigger"] == {"kind": "event", "event_id": "close-2026-10", "type": "books.closed", "source": "ledger"}
    assert [row["run_id"] for row in runs["runs"]] == [run_id]
    assert any(d["kind"] == "workflow-input" and "'month' is a required property" in d["reason"] for d in dead)


async def _finished_or_none(platform, run_id: str) -> dict | None:
    status, view = await platform.api("GET", f"workflows/runs/{run_id}")
    return view if status == 200 and view.get("status") == "completed" else None


async def test_the_cli_runs_a_workflow_waits_for_it_and_shows_its_steps(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "cli-flow", "steps": [
        _agent("one", "analyst", "analysis.one"), _agent("two", "reviewer", "review.two", needs=["one"])]})
    async with running(tmp_path / "state", config_paths=config_paths(wf)) as platform:
        common = ["--url", platform.base_url, "--key", platform.key]

        def cli(*args: str):
            return CliRunner().invoke(aos, ["workflows", *args, *common])

        listed = await asyncio.to_thread(cli, "list")
        ran = await asyncio.to_thread(cli, "run", "cli-flow", "--input", "{}", "--wait")
        run_id = next(line.split()[1] for line in ran.output.splitlines() if line.startswith("run "))
        shown = await asyncio.to_thread(cli, "status", run_id)
        bad = await asyncio.to_thread(cli, "run", "cli-flow", "--input", "[1")
    assert listed.exit_code == 0 and "cli-flow" in listed.output and "one → two" in listed.output
    assert ran.exit_code == 0, ran.output
    assert f"{run_id}  cli-flow  →  COMPLETED" in ran.output
    assert shown.exit_code == 0, shown.output
    rows = [line.split()[:3] for line in shown.output.splitlines()]
    assert ["one", "agent", "completed"] in rows and ["two", "agent", "completed"] in rows
    assert bad.exit_code != 0 and "not valid JSON" in bad.output


async def test_a_turn_that_fails_answers_the_waiting_step_at_once_with_agent_failed(tmp_path: Path) -> None:
    wf = write_workflow(tmp_path / "wf", {"id": "flaky", "steps": [
        _agent("ask", "analyst", "analysis.ask", {"q": "figures"}, timeout_seconds=600)]})
    async with FakeOpenAI() as model:
        model.reply('{"aligned": true, "reason": "analysis"}').fail(500, "the model is overloaded") \
            .fail(500, "the model is overloaded")
        async with running(tmp_path / "state", config_paths=config_paths(wf), extra_settings={
                "AOS_INFERENCE_ENDPOINT": model.base_url, "AOS_INFERENCE_MODEL": "fake-model"}) as platform:
            run_id = await start(platform, "flaky", {})
            view = await finished(platform, run_id, timeout=60)
            turn = await archived_turn(platform, "analyst", turn_instance_id("analyst", ids.attempt_id(run_id, "ask", 1)))
    assert view["status"] == "failed", view
    error = steps(view)["ask"]["error"]
    assert error.startswith("agent 'analyst' failed: model call failed:") and "overloaded" in error
    assert turn["outcome"] == "failed"
    [reply] = turn["outputs"]
    assert reply["type"] == "agent.failed" and reply["to"] == ids.source(run_id)
    assert reply["correlation_id"] == ids.attempt_id(run_id, "ask", 1)
