"""The topics, subscriptions and SQL filters implied by the agent configs."""

from __future__ import annotations

from pathlib import Path

from kernel.config import load_configs
from kernel.config.models import AgentConfig, Subscription
from kernel.engine.sqlfilter import parse
from kernel.topology import AGENT_EVENTS, agent_rule_sql, build_topology, like_pattern

REPO = Path(__file__).resolve().parents[1]


def _subscription(document: dict, topic: str, name: str) -> dict:
    (found,) = [s for t in document["topics"] if t["name"] == topic for s in t["subscriptions"] if s["name"] == name]
    return found


def test_sample_topology_has_a_rule_per_subscribing_agent() -> None:
    document, problems = build_topology(load_configs([REPO / "agent_configs", REPO / "mcp_configs"]))
    assert problems == []
    topics = {t["name"] for t in document["topics"]}
    assert topics == {"agent-events", "agent-outputs", "mcp-requests", "mcp-responses"}
    realm = _subscription(document, AGENT_EVENTS, "realm")
    rules = {rule["name"]: rule["sql"] for rule in realm["rules"]}
    assert rules["direct"] == "sys.To IS NOT NULL"
    assert rules["agent-cfo"] == "sys.Label LIKE 'finance.%' OR sys.Label LIKE 'invoice.%' OR sys.Label LIKE 'budget.%'"
    assert set(rules) == {"direct", "agent-acme.cfo", "agent-ceo", "agent-cfo", "agent-cto", "agent-operations"}


def test_event_patterns_become_like_clauses_with_escapes() -> None:
    assert like_pattern("finance.*") == "sys.Label LIKE 'finance.%'"
    assert like_pattern("ops_x.*") == "sys.Label LIKE 'ops\\_x.%' ESCAPE '\\'"
    assert like_pattern("decision.approved") == "sys.Label = 'decision.approved'"


def test_generated_filters_parse_and_select_the_right_events() -> None:
    agent = AgentConfig(
        id="a", display_name="A", purpose="p",
        subscriptions=[Subscription(event_types=["ops_x.*", "plan.done"])],
    )
    predicate = parse(agent_rule_sql(agent, AGENT_EVENTS))

    class Message:
        def __init__(self, subject: str) -> None:
            self.subject = subject
            self.application_properties = {}
            self.to = self.message_id = self.correlation_id = self.content_type = None
            self.reply_to = self.session_id = None

    assert predicate.matches(Message("ops_x.started"))
    assert not predicate.matches(Message("opsXx.started"))
    assert predicate.matches(Message("plan.done"))
    assert not predicate.matches(Message("plan.done.later"))


def test_disabled_agents_get_no_rule(tmp_path: Path) -> None:
    (tmp_path / "agent_configs").mkdir()
    (tmp_path / "agent_configs" / "a.yaml").write_text(
        "id: a\ndisplay_name: A\npurpose: p\nenabled: false\nsubscriptions: [{event_types: ['x.*']}]\n"
    )
    document, _ = build_topology(load_configs([tmp_path / "agent_configs"]))
    realm = _subscription(document, AGENT_EVENTS, "realm")
    assert [rule["name"] for rule in realm["rules"]] == ["direct"]


def test_filters_longer_than_service_bus_allows_are_reported(tmp_path: Path) -> None:
    patterns = ", ".join(f"'event.kind{n:03d}.*'" for n in range(60))
    (tmp_path / "agent_configs").mkdir()
    (tmp_path / "agent_configs" / "a.yaml").write_text(
        f"id: chatty\ndisplay_name: A\npurpose: p\nsubscriptions: [{{event_types: [{patterns}]}}]\n"
    )
    _, problems = build_topology(load_configs([tmp_path / "agent_configs"]))
    (problem,) = problems
    assert "1024" in problem.message and problem.file.endswith("a.yaml")


def test_each_subscription_has_the_lock_its_consumer_needs_and_the_embedded_bus_applies_it() -> None:
    """One minute for the quick consumers, five (the Service Bus maximum) for the MCP gateway,
    whose deliveries last a whole tool call; Bicep, the emulator and the embedded bus read it."""
    import sqlite3
    from datetime import timedelta

    from kernel.engine.bus import EmbeddedBus
    from kernel.engine.topology import declare
    from kernel.topology import GATEWAY_SUBSCRIPTION, KERNEL_SUBSCRIPTION, REALM_SUBSCRIPTION

    document, _ = build_topology(load_configs([REPO / "agent_configs", REPO / "mcp_configs"]))
    locks = {(t["name"], s["name"]): s["lock_duration_seconds"] for t in document["topics"] for s in t["subscriptions"]}
    assert locks == {("agent-events", REALM_SUBSCRIPTION): 60, ("agent-events", "workflows"): 60,
                     ("agent-outputs", KERNEL_SUBSCRIPTION): 60,
                     ("mcp-requests", GATEWAY_SUBSCRIPTION): 300, ("mcp-responses", KERNEL_SUBSCRIPTION): 60}

    class NoTriggers:
        def by_trigger(self, trigger_type: str) -> list:
            return []

    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        bus = EmbeddedBus(connection)
        declare(bus, NoTriggers(), document)
        subscriptions = bus.entities()["topics"]["mcp-requests"]["subscriptions"]
        assert subscriptions[GATEWAY_SUBSCRIPTION]["lock_duration"] == timedelta(minutes=5)
    finally:
        connection.close()
