"""How a turn takes the results of steps its policy activity ran inline: in order, checked by
name, with the clock they ran at; a step that does not match ends the taking, and the turn
schedules its calls again. (The turns themselves, end to end: test_turn_steps.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from realm_of_agents import inline_steps, turn

STARTED = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
RAN_AT = STARTED + timedelta(milliseconds=40)


def _turn(now: datetime = STARTED) -> turn.Turn:
    context = inline_steps._LocalContext(now)
    event = {"id": "e1", "type": "ledger.entry", "source": "test"}
    return turn.Turn(context, "clerk", "turn-1", event, {"config": {"purpose": "keep the ledger"}})


def _take(steps: Any) -> Any:
    """The value a generator step returns without yielding anything."""
    with pytest.raises(StopIteration) as done:
        next(steps)
    return done.value.value


def test_results_are_taken_in_order_with_the_clock_they_ran_at() -> None:
    work = _turn(now=RAN_AT + timedelta(seconds=5))  # the orchestration's clock, later than the inline steps
    work._inline.extend([(turn.TOOL, {"content": []}), (turn.CONCLUDE, {"archived": True, "published": 1})])
    work._inline_at = RAN_AT
    assert work.now() == RAN_AT
    assert _take(work._activity(turn.TOOL, {})) == {"content": []}
    assert work.now() == RAN_AT  # a result is still to be taken: the code still runs at that time
    assert _take(work._activity(turn.CONCLUDE, {})) == {"archived": True, "published": 1}
    assert work.now() == RAN_AT + timedelta(seconds=5)  # all taken: the orchestration's own clock
    call = next(work._activity(turn.MODEL, {"step": 1}))  # and calls are scheduled again
    assert call == inline_steps._Call(turn.MODEL, {"step": 1})


def test_a_step_that_does_not_match_ends_the_taking_with_the_reason() -> None:
    work = _turn()
    work._inline.extend([(turn.SUMMARIZE, "a line"), (turn.CONCLUDE, {"archived": True})])
    work._inline_at = RAN_AT
    with pytest.raises(RuntimeError, match="ran 'agent_summarize' inline where the turn now calls 'agent_conclude'"):
        next(work._activity(turn.CONCLUDE, {}))
    assert not work._inline and work.now() == STARTED
    assert next(work._activity(turn.CONCLUDE, {"turn_id": "turn-1"})) == inline_steps._Call(turn.CONCLUDE, {"turn_id": "turn-1"})


def test_a_conclusion_that_does_not_match_is_scheduled_as_its_separate_steps() -> None:
    work = _turn()
    work._inline.append((turn.SUMMARIZE, "a line"))
    work._inline_at = RAN_AT
    record = {"turn_id": "turn-1", "outputs": [{"id": "o1"}], "error": None}
    steps = work._conclude(record)
    assert next(steps).name == turn.ARCHIVE  # as when the conclude activity itself failed
    assert steps.send(None).name == turn.PUBLISH


@pytest.mark.parametrize(("value", "expected"), [("on", True), (" ON ", True), ("1", True), ("off", False),
                                                 ("false", False), ("0", False)])
def test_the_setting(value: str, expected: bool) -> None:
    assert inline_steps.enabled({inline_steps.SETTING: value}) is expected


def test_the_setting_is_on_by_default_and_a_bad_value_names_it() -> None:
    assert inline_steps.enabled({}) is True
    with pytest.raises(ValueError, match="AOS_TURN_INLINE_STEPS must be on or off, got 'sometimes'"):
        inline_steps.enabled({inline_steps.SETTING: "sometimes"})
