"""Hot memory stays bounded however many turns an agent lives through."""

from __future__ import annotations

from kernel.config.models import MemoryBudget
from realm_of_agents.memory import (
    digest,
    empty_memory,
    fit_to_budget,
    pin_fact,
    remember_turn,
    size_of,
)

BUDGET = MemoryBudget(max_state_bytes=16384, window_turns=5, summary_max_chars=1000, pinned_facts_max=3)


def _turn(n: int) -> dict:
    return digest(f"t{n:06d}", f"2026-11-21T12:{n % 60:02d}:00Z", "finance.invoice.received",
                  "replied", f"Invoice {n:06d} from vendor {n % 7} checked against budget. Approved.")


def _state_after(turns: int) -> dict:
    memory = empty_memory()
    for n in range(turns):
        memory = remember_turn(memory, _turn(n), BUDGET)
    return {"id": "cfo", "memory": memory}


def test_window_keeps_the_most_recent_turns_in_order() -> None:
    memory = _state_after(12)["memory"]
    assert [t["turn_id"] for t in memory["window"]] == ["t000007", "t000008", "t000009", "t000010", "t000011"]
    assert memory["summarized_turns"] == 7
    assert memory["summary"][0].startswith("2026-11-21T12:00 finance.invoice.received (replied): Invoice 000000")


def test_state_size_is_flat_from_ten_to_ten_thousand_turns() -> None:
    sizes = {n: size_of(_state_after(n)) for n in (10, 1000, 10000)}
    # Flat but for the digits of the two counters (summarized turns, dropped summary lines).
    assert 0 <= sizes[10000] - sizes[1000] <= 2
    assert sizes[10000] <= BUDGET.max_state_bytes
    assert _state_after(10000)["memory"]["dropped_summary_lines"] > 0


def test_summary_never_exceeds_its_character_limit() -> None:
    memory = _state_after(500)["memory"]
    assert sum(len(line) + 1 for line in memory["summary"]) <= BUDGET.summary_max_chars


def test_remember_does_not_mutate_its_input() -> None:
    before = _state_after(5)["memory"]
    snapshot = repr(before)
    remember_turn(before, _turn(99), BUDGET)
    assert repr(before) == snapshot


def test_facts_are_pinned_once_and_bounded() -> None:
    memory = empty_memory()
    for fact in ["a", "b", "a", "c", "d"]:
        memory = pin_fact(memory, fact, BUDGET)
    assert memory["facts"] == ["a", "c", "d"]  # re-pinning refreshes a fact


def test_fit_to_budget_drops_oldest_summary_then_window() -> None:
    tight = MemoryBudget(max_state_bytes=8192, window_turns=20, summary_max_chars=100_000)
    memory = empty_memory()
    for n in range(200):
        memory = remember_turn(memory, _turn(n), tight)
    state = {"id": "cfo", "memory": memory}
    assert size_of(state) > tight.max_state_bytes
    fitted = fit_to_budget(state, tight)
    assert size_of(fitted) <= tight.max_state_bytes
    assert fitted["memory"]["window"][-1]["turn_id"] == "t000199"
    assert size_of(state) > tight.max_state_bytes  # the input is untouched
