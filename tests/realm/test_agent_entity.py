"""The agent entity through the Durable SDK's own entity handler (real batch JSON in and out)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import azure.durable_functions as df
import pytest

from kernel.config import load_configs
from realm_of_agents.entity import agent_entity

REPO = Path(__file__).resolve().parents[2]
CONFIGS = load_configs([REPO / "agent_configs", REPO / "mcp_configs"])
CFO = CONFIGS.agents["cfo"].model_dump(mode="json", by_alias=True, exclude_none=True)
AT = "2026-11-21T12:00:00Z"
HANDLER = df.Entity.create(agent_entity)


class Entity:
    """Drives the SDK handler batch by batch, carrying state between batches like the host."""

    def __init__(self, key: str = "cfo") -> None:
        self.key = key
        self.state: str | None = None
        self.exists = False

    def run(self, *operations: tuple[str, Any]) -> list[dict[str, Any]]:
        batch = [{"name": name, "input": json.dumps(json.dumps(payload))} for name, payload in operations]
        raw = HANDLER(json.dumps({"self": {"name": "agent", "key": self.key}, "exists": self.exists,
                                  "state": self.state, "batch": batch}))
        out = json.loads(raw)
        self.exists, self.state = out["entityExists"], out["entityState"]
        return [
            {"error": r["result"]} if r["isError"] else json.loads(r["result"]) for r in out["results"]
        ]

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.state) if self.state else {}


def _turn(outcome: str = "replied", **extra: Any) -> dict[str, Any]:
    return {"digest": {"turn_id": "t", "time": AT, "event_type": "invoice.received", "outcome": outcome,
                       "text": "Checked the invoice."}, **extra}


def test_configure_creates_the_agent_with_its_goals() -> None:
    entity = Entity()
    (result,) = entity.run(("configure", {"config": CFO, "version": "v1", "at": AT}))
    assert result == {"changed": True, "status": "sleeping"}
    assert entity.data["config"]["purpose"] == CFO["purpose"]
    assert [g["id"] for g in entity.data["goals"]] == ["budget-adherence", "weekly-forecast"]
    assert entity.run(("configure", {"config": CFO, "version": "v1", "at": AT})) == [{"changed": False, "status": "sleeping"}]


def test_turns_run_one_at_a_time_in_arrival_order() -> None:
    entity = Entity()
    results = entity.run(
        ("configure", {"config": CFO, "version": "v1", "at": AT}),
        ("begin", {"event_id": "e1"}),
        ("begin", {"event_id": "e2"}),
        ("begin", {"event_id": "e3"}),
    )
    assert [r["decision"] for r in results[1:]] == ["start", "queued", "queued"]
    assert entity.run(("finish", {"event_id": "e1", "turn": _turn(), "at": AT})) == [{"next": "e2"}]
    assert entity.run(("finish", {"event_id": "e2", "turn": _turn("declined"), "at": AT})) == [{"next": "e3"}]
    assert entity.run(("finish", {"event_id": "e3", "turn": _turn(), "at": AT})) == [{"next": None}]
    data = entity.data
    assert data["status"] == "sleeping" and data["inbox"] == [] and data["current"] is None
    assert data["counters"]["turns"] == 3 and data["counters"]["declined"] == 1


def test_a_redelivered_event_is_refused_as_duplicate() -> None:
    entity = Entity()
    entity.run(("configure", {"config": CFO, "version": "v1", "at": AT}), ("begin", {"event_id": "e1"}))
    assert entity.run(("enqueue", {"event_id": "e1"})) == [{"decision": "duplicate"}]
    assert entity.run(("begin", {"event_id": "e1"})) == [{"decision": "start"}], "its own turn asking again"
    entity.run(("finish", {"event_id": "e1", "turn": _turn(), "at": AT}))
    assert entity.run(("begin", {"event_id": "e1"})) == [{"decision": "duplicate"}]
    assert entity.run(("finish", {"event_id": "e1", "turn": _turn(), "at": AT})) == [{"next": None, "duplicate": True}]
    assert entity.data["counters"]["turns"] == 1


def test_the_inbox_keeps_broker_order_whatever_order_turns_ask_in() -> None:
    """The wake function enqueues in bus order; turn orchestrations may reach the entity later and
    in any order, and only the head of the inbox starts."""
    entity = Entity()
    results = entity.run(
        ("configure", {"config": CFO, "version": "v1", "at": AT}),
        ("enqueue", {"event_id": "e2", "seq": 20}),
        ("enqueue", {"event_id": "e1", "seq": 10}),
        ("enqueue", {"event_id": "e3", "seq": 30}),
        ("begin", {"event_id": "e3", "seq": 30}),
        ("begin", {"event_id": "e2", "seq": 20}),
        ("begin", {"event_id": "e1", "seq": 10}),
    )
    assert [r["decision"] for r in results[4:]] == ["queued", "queued", "start"]
    assert [entry["id"] for entry in entity.data["inbox"]] == ["e2", "e3"]
    assert entity.run(("finish", {"event_id": "e1", "turn": _turn(), "at": AT})) == [{"next": "e2"}]
    assert entity.run(("begin", {"event_id": "e2"})) == [{"decision": "start"}]


def test_a_retired_agent_refuses_new_events_and_remembers_facts_given_to_it() -> None:
    entity = Entity()
    results = entity.run(
        ("configure", {"config": CFO, "version": "v1", "at": AT}),
        ("remember", {"fact": "The fiscal year ends in June.", "at": AT}),
        ("retire", {"by": "ops"}),
        ("enqueue", {"event_id": "e1"}),
        ("begin", {"event_id": "e1"}),
    )
    assert results[1] == {"facts": 1}
    assert results[3:] == [{"decision": "refused", "reason": "agent is retired"}] * 2
    assert entity.data["memory"]["facts"] == ["The fiscal year ends in June."]


def test_every_operation_of_a_batch_gets_its_own_result() -> None:
    """The SDK leaks set_result between operations; each of ours sets one."""
    entity = Entity()
    results = entity.run(
        ("configure", {"config": CFO, "version": "v1", "at": AT}),
        ("pause", {"reason": "maintenance"}),
        ("begin", {"event_id": "e1"}),
        ("resume", {"by": "ops"}),
        ("release", {"by": "ops"}),
    )
    assert results == [
        {"changed": True, "status": "sleeping"},
        {"status": "paused"},
        {"decision": "queued", "position": 1},
        {"status": "sleeping"},
        {"next": "e1"},
    ]


def test_a_failed_operation_leaves_the_state_untouched() -> None:
    entity = Entity()
    entity.run(("configure", {"config": CFO, "version": "v1", "at": AT}), ("begin", {"event_id": "e1"}))
    before = entity.state
    (result,) = entity.run(("finish", {"event_id": "other", "turn": _turn(), "at": AT}))
    assert "not the agent's current turn" in result["error"]
    assert entity.state == before


@pytest.mark.parametrize(
    "operation, payload, says",
    [
        ("explode", {}, "unknown agent operation 'explode'"),
        ("begin", {"wrong": 1}, "needs field 'event_id'"),
        ("update_goal", {"goal_id": "nope", "change": {"action": "complete"}, "at": AT}, "no goal 'nope'"),
    ],
)
def test_bad_operations_fail_with_a_clear_message(operation: str, payload: dict, says: str) -> None:
    entity = Entity()
    entity.run(("configure", {"config": CFO, "version": "v1", "at": AT}))
    (result,) = entity.run((operation, payload))
    assert says in result["error"]


def test_purpose_change_is_remembered_and_disable_pauses() -> None:
    entity = Entity()
    entity.run(("configure", {"config": CFO, "version": "v1", "at": AT}))
    changed = {**CFO, "purpose": "Run treasury and cash management.", "enabled": False}
    (result,) = entity.run(("configure", {"config": changed, "version": "v2", "at": "2026-12-01T00:00:00Z"}))
    assert result["status"] == "paused"
    assert entity.data["memory"]["facts"] == ["2026-12-01: purpose changed to: Run treasury and cash management."]
    assert entity.data["config_version"] == "v2"


def test_goals_progress_complete_and_abandon_from_turn_outcomes() -> None:
    entity = Entity()
    entity.run(("configure", {"config": CFO, "version": "v1", "at": AT}), ("begin", {"event_id": "e1"}))
    updates = {"budget-adherence": {"action": "progress", "progress": 40, "note": "Q4 on track"},
               "weekly-forecast": {"action": "complete"}}
    entity.run(("finish", {"event_id": "e1", "turn": _turn(goal_updates=updates), "at": AT}))
    goals = {g["id"]: g for g in entity.data["goals"]}
    assert goals["budget-adherence"]["progress"] == 40 and goals["budget-adherence"]["note"] == "Q4 on track"
    assert goals["weekly-forecast"]["status"] == "completed"
    (added,) = entity.run(("update_goal", {"goal_id": "audit", "change": {"action": "add", "description": "Pass the audit"}, "at": AT}))
    assert added["goal"]["status"] == "active"
    (abandoned,) = entity.run(("update_goal", {"goal_id": "audit", "change": {"action": "abandon"}, "at": AT}))
    assert abandoned["goal"]["status"] == "abandoned"


def test_state_stays_under_budget_after_many_turns() -> None:
    entity = Entity()
    entity.run(("configure", {"config": CFO, "version": "v1", "at": AT}))
    sizes = {}
    for n in range(1, 1001):
        entity.run(("begin", {"event_id": f"e{n:06d}"}),
                   ("finish", {"event_id": f"e{n:06d}", "turn": _turn(), "at": AT}))
        if n in (10, 500, 1000):
            sizes[n] = len(entity.state.encode())
    assert sizes[1000] <= CONFIGS.agents["cfo"].memory.max_state_bytes
    assert sizes[1000] - sizes[500] <= 4  # flat but for counter digits


def _lived_in_state() -> dict[str, Any]:
    """A configured agent with a remembered past, a fact, a running turn and two queued events."""
    from realm_of_agents import agent_state

    state = agent_state.new_state("cfo")
    state, _ = agent_state.configure(state, CFO, "v1", AT)
    for n in range(15):
        state, _ = agent_state.begin(state, f"past{n}")
        state, _ = agent_state.finish(state, f"past{n}", _turn(facts=[f"fact {n % 3}"]), AT)
    for event_id in ("now", "next", "later"):
        state, _ = agent_state.begin(state, event_id)
    return state


@pytest.mark.parametrize("operation, payload", [
    ("enqueue", {"event_id": "new", "seq": 1}),
    ("begin", {"event_id": "new"}),
    ("begin", {"event_id": "now"}),
    ("finish", {"event_id": "now", "turn": _turn(facts=["learned"], tool_calls=2, tokens_in=5,
                goal_updates={"budget-adherence": {"action": "progress", "progress": 10},
                              "weekly-forecast": {"action": "touch", "turn_id": "t"}}), "at": AT}),
    ("skip", {"event_id": "now"}),
    ("release", {}),
    ("remember", {"fact": "pinned by hand", "at": AT}),
    ("update_goal", {"goal_id": "budget-adherence", "change": {"action": "complete"}, "at": AT}),
    ("pause", {}),
    ("context", {"for": "someone"}),
])
def test_an_operation_never_changes_the_state_it_was_given(operation: str, payload: dict) -> None:
    """Operations share unchanged parts of the state with the one they return instead of copying
    it whole: whatever they change must be replaced, never mutated, or a failed operation's
    changes would survive in the SDK's state and in the engine's kept copy."""
    from realm_of_agents.entity import apply

    given = _lived_in_state()
    before = json.dumps(given, sort_keys=True)
    new, _ = apply(operation, given, "cfo", payload)
    assert json.dumps(given, sort_keys=True) == before
    reads_only = operation in ("context", "release") or (operation == "begin" and payload["event_id"] == "now")
    if not reads_only:  # release: nothing queued behind a running turn; begin of the current event: already started
        assert json.dumps(new, sort_keys=True) != before  # the operation did change something


def test_a_queued_turn_reads_only_its_place_and_the_granted_turn_the_whole_state() -> None:
    entity = Entity()
    entity.run(("configure", {"config": CFO, "version": "v1", "at": AT}))
    first = entity.run(("begin", {"event_id": "e1"}), ("context", {"for": "turn-1", "event_id": "e1"}))
    second = entity.run(("begin", {"event_id": "e2"}), ("context", {"for": "turn-2", "event_id": "e2"}))
    assert first[0] == {"decision": "start"} and first[1]["config"]["purpose"] == CFO["purpose"]
    assert second == [{"decision": "queued", "position": 1},
                      {"id": "cfo", "status": "working", "queued": True, "inbox_size": 1}]
    entity.run(("finish", {"event_id": "e1", "turn": _turn(), "at": AT}))
    granted = entity.run(("begin", {"event_id": "e2"}), ("context", {"for": "turn-2", "event_id": "e2"}))
    assert granted[0] == {"decision": "start"}
    assert granted[1]["config"]["purpose"] == CFO["purpose"] and granted[1]["current"] == "e2"
    # a turn started before this answer existed asks without its event id: the whole state
    (old_style,) = entity.run(("context", {"for": "turn-2"}))
    assert old_style["config"]["purpose"] == CFO["purpose"]
