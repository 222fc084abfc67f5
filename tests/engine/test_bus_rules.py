"""A subscription's rules on the embedded bus: label rules through the index in its database, the
rest as written, and together the same answer as evaluating every rule on its own."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from kernel.engine.bus import CorrelationRule, EmbeddedBus, OutgoingMessage, SqlRule
from kernel.engine.sqlfilter import label_terms, rule_matches

START = datetime(2030, 1, 1, tzinfo=timezone.utc)

RULE_SQL = [
    "sys.Label = 'orders.created'",
    "'billing.paid' = sys.Label",
    "sys.Label LIKE 'audit.%' OR sys.Label = 'ping'",
    "sys.Subject LIKE 'reports.%'",
    "sys.Label LIKE 'exact-like'",
    "sys.Label LIKE '100!%%' ESCAPE '!'",
    "sys.Label LIKE 'a_c'",  # a one-character wildcard: evaluated as written
    "sys.Label LIKE '%.done'",  # a suffix: evaluated as written
    "sys.Label NOT LIKE 'x.%'",
    "sys.Label = 'team.x' AND priority > 5",
    "sys.Label LIKE 'p.%' OR priority > 100",  # a term that is not a label term: the whole rule as written
    "sys.To IS NOT NULL",
]
CORRELATIONS = [CorrelationRule("eu", application_properties={"region": "eu"})]
LABELS = [None, "", "orders.created", "orders.created.v2", "orders", "billing.paid", "audit.", "audit.x\ny", "audit",
          "ping", "pingpong", "reports.q3", "exact-like", "100%", "100%x", "100!", "abc", "a\nc", "task.done", "x.1",
          "team.x", "p.q", "%", "_"]


@pytest.fixture
def bus() -> Iterator[EmbeddedBus]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    yield EmbeddedBus(connection, clock=lambda: START)
    connection.close()


def _message(subject: str | None, to: str | None = None,
             application_properties: dict[str, object] | None = None) -> OutgoingMessage:
    return OutgoingMessage(b"x", subject=subject, to=to, application_properties=application_properties or {})


def _routed(bus: EmbeddedBus, message: OutgoingMessage, path: str = "events/Subscriptions/s") -> bool:
    """Whether the subscription took ``message`` (it is drained again before returning)."""
    bus.send("events", message)
    received = bus.receive(path, max_count=10)
    for each in received:
        bus.complete(each.lock_token or "")
    return bool(received)


@pytest.mark.parametrize("sql", [
    RULE_SQL, RULE_SQL[:6], RULE_SQL[6:], ["sys.Label LIKE '%'"], ["1=0"], [f"sys.Label = 'l{n}'" for n in range(50)],
])
def test_a_subscription_selects_exactly_what_its_rules_select_one_by_one(bus: EmbeddedBus, sql: list[str]) -> None:
    rules = [SqlRule(f"r{n}", text) for n, text in enumerate(sql)] + CORRELATIONS
    bus.declare_subscription("events", "s", rules=rules)
    checked = 0
    for label in LABELS + [f"l{n}" for n in (0, 49, 50)]:
        for to in (None, "agent-1"):
            for properties in ({}, {"priority": 7}, {"priority": 500}, {"region": "eu"}):
                message = _message(label, to, properties)
                expected = any(rule_matches(rule, message) for rule in rules)
                assert _routed(bus, message) is expected, (label, to, properties)
                checked += expected
    assert checked > 0


def test_label_terms_recognise_only_ors_of_label_equalities_and_prefixes() -> None:
    assert label_terms("sys.Label = 'a' OR sys.Label LIKE 'b.%' OR 'c' = sys.Label") == [
        (True, "a"), (False, "b."), (True, "c")]
    assert label_terms("sys.Label LIKE '100!%%' ESCAPE '!'") == [(False, "100%")]
    for other in ("sys.Label LIKE 'a_c'", "sys.Label LIKE '%.done'", "sys.Label = 'a' AND x = 1",
                  "sys.Label NOT LIKE 'x.%'", "sys.Subject LIKE 'r.%' OR priority > 1", "1=1"):
        assert label_terms(other) is None, other


def test_ten_thousand_label_rules_route_by_label_from_the_index(bus: EmbeddedBus) -> None:
    rules = [SqlRule(f"agent-{n:05d}", f"sys.Label = 'a{n:05d}.work' OR sys.Label LIKE 'all{n % 7}.%'")
             for n in range(10_000)]
    bus.declare_subscription("events", "s", rules=rules)
    conn = bus._conn
    assert conn.execute("SELECT COUNT(*) FROM bus_rule_labels").fetchone() == (10_007,)  # the prefixes shared
    assert _routed(bus, _message("a09999.work"))
    assert _routed(bus, _message("all6.now"))
    assert not _routed(bus, _message("a10000.work"))
    assert not _routed(bus, _message("all7.now"))
    assert not _routed(bus, _message(None))


def test_redeclared_label_rules_replace_the_index_and_the_same_rules_keep_it(bus: EmbeddedBus) -> None:
    bus.declare_subscription("events", "s", rules=[SqlRule("r", "sys.Label = 'blue' OR sys.Label LIKE 'sky.%'")])
    bus.declare_subscription("events", "s", rules=[SqlRule("r", "sys.Label = 'red'")])
    assert not _routed(bus, _message("blue")) and not _routed(bus, _message("sky.high"))
    assert _routed(bus, _message("red"))
    before = bus._conn.total_changes
    bus.declare_subscription("events", "s", rules=[SqlRule("r", "sys.Label = 'red'")])
    assert bus._conn.total_changes - before <= 2  # the entity row only: the index is not rewritten
    assert _routed(bus, _message("red"))


def test_a_bus_stored_before_the_label_index_indexes_its_rules_when_opened(tmp_path: Path) -> None:
    path = tmp_path / "bus.sqlite"
    old = sqlite3.connect(path, isolation_level=None)
    EmbeddedBus(old, clock=lambda: START).declare_subscription(
        "events", "s", rules=[SqlRule("blue", "sys.Label = 'blue' OR sys.Label LIKE 'sky.%'"),
                              SqlRule("hot", "temp > 30")])
    old.execute("DROP TABLE bus_rule_labels")  # as an earlier version stored it
    old.execute("ALTER TABLE bus_entities DROP COLUMN routing")
    old.close()
    upgraded = sqlite3.connect(path, isolation_level=None)
    try:
        bus = EmbeddedBus(upgraded, clock=lambda: START)
        assert _routed(bus, _message("blue")) and _routed(bus, _message("sky.grey"))
        assert _routed(bus, _message("rain", application_properties={"temp": 31}))
        assert not _routed(bus, _message("rain", application_properties={"temp": 3}))
    finally:
        upgraded.close()
