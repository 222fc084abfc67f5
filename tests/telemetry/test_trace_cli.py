"""`aos traces` and `aos trace`: traces written as JSON lines by the console exporter, read back as trees."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

from click.testing import CliRunner
from opentelemetry.trace import SpanKind

from kernel import telemetry
from kernel.cli import main
from kernel.telemetry.config import from_settings
from kernel.telemetry.spans import MODEL, TOOL_REQUEST, WAKE, span
from kernel.telemetry.turns import record_turn, turn_context

TRACE = "6e0c63257de34c92bf9efcd03927272e"


def _write_spans(state: Path) -> str:
    """A wake, its turn with a model call and a failed tool request, through the real exporter; the wake's traceparent."""
    configured = telemetry.configure(from_settings({"AOS_TELEMETRY_CONSOLE": str(state / "telemetry" / "spans.jsonl")}))
    try:
        with span(WAKE, kind=SpanKind.CONSUMER, parent=f"00-{TRACE}-aaaaaaaaaaaaaaaa-01",
                  attributes={"aos.event.type": "ledger.entry"}):
            event_traceparent = telemetry.current_traceparent()
        turn = turn_context(event_traceparent, "turn-keeper-9")
        with span(MODEL, kind=SpanKind.CLIENT, parent=turn, attributes={"aos.agent_id": "keeper", "aos.step": 0}):
            pass
        try:
            with span(TOOL_REQUEST, kind=SpanKind.PRODUCER, parent=turn, attributes={"aos.mcp.tool": "echo"}):
                raise ConnectionError("bus unreachable: SharedAccessKey=abc123secret")
        except ConnectionError:
            pass
        record_turn({"turn_id": "turn-keeper-9", "agent_id": "keeper", "outcome": "replied",
                     "started": datetime.now(UTC).isoformat(),
                     "event": {"id": "e-9", "type": "ledger.entry", "traceparent": event_traceparent}})
        with span(WAKE, parent=None, attributes={"aos.event.type": "other.thing"}):
            pass
    finally:
        telemetry.release(configured)
    return event_traceparent


def test_traces_are_listed_and_one_is_shown_as_a_tree(tmp_path: Path) -> None:
    state = tmp_path / "state"
    _write_spans(state)
    runner = CliRunner()

    listed = runner.invoke(main, ["traces", "--state", str(state)])
    assert listed.exit_code == 0, listed.output
    lines = listed.output.splitlines()
    assert len(lines) == 2
    [ours] = [line for line in lines if TRACE in line]
    assert "4 spans" in ours and "agent.wake" in ours and "[keeper]" in ours and "1 error(s)" in ours
    only_keeper = runner.invoke(main, ["traces", "--state", str(state), "--agent", "keeper"])
    assert only_keeper.output.splitlines() == [ours]

    shown = runner.invoke(main, ["trace", TRACE[:8], "--state", str(state)])
    assert shown.exit_code == 0, shown.output
    tree = shown.output.splitlines()
    assert tree[0].startswith(f"trace {TRACE}  (4 spans")
    names = [(len(line) - len(line.lstrip()), line.split()[0]) for line in tree[1:]]
    assert names == [(2, "agent.wake"), (4, "agent.turn"), (6, "agent.model"), (6, "mcp.request")]
    [failed] = [line for line in tree if "mcp.request" in line]
    assert "ERROR: bus unreachable: SharedAccessKey=***" in failed and "abc123secret" not in shown.output
    assert "tool=echo" in failed

    by_turn = runner.invoke(main, ["trace", "turn-keeper-9", "--state", str(state), "--json"])
    assert by_turn.exit_code == 0, by_turn.output
    records = json.loads(by_turn.output)
    assert records[0]["name"] == "agent.wake" and {r["trace_id"] for r in records} == {TRACE}


def test_clear_errors_when_there_is_nothing_to_show(tmp_path: Path) -> None:
    runner = CliRunner()
    missing = runner.invoke(main, ["traces", "--state", str(tmp_path / "nowhere")])
    assert missing.exit_code != 0 and "no spans at" in missing.output and "aos run" in missing.output
    _write_spans(tmp_path / "state")
    unknown = runner.invoke(main, ["trace", "ffffffffffff", "--state", str(tmp_path / "state")])
    assert unknown.exit_code != 0 and "no trace 'ffffffffffff'" in unknown.output
