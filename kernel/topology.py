"""The Service Bus topics, subscriptions and filters that the configs imply.

The apps talk only through these topics. The realm's subscription on each events topic carries
one rule per agent (rules without actions are OR-ed by Service Bus, so a message arrives once), so
an event that no agent wants never wakes the app. Directly addressed events (``to`` set) always
reach the realm, which reports addressees that do not exist instead of losing the event.
The same JSON feeds the embedded engine, `aos topology` and the Bicep parameters.
"""

from __future__ import annotations

from typing import Any

from kernel.config.loader import ConfigSet
from kernel.config.models import DEFAULT_EVENTS_TOPIC, AgentConfig
from kernel.config.problems import Problem

AGENT_EVENTS = DEFAULT_EVENTS_TOPIC
AGENT_OUTPUTS = "agent-outputs"
MCP_REQUESTS = "mcp-requests"
MCP_RESPONSES = "mcp-responses"

REALM_SUBSCRIPTION = "realm"
KERNEL_SUBSCRIPTION = "kernel"
GATEWAY_SUBSCRIPTION = "mcp-gateway"
MAX_DELIVERY_COUNT = 10
#: Service Bus refuses SQL filter expressions longer than this.
MAX_SQL_FILTER_CHARS = 1024


def like_pattern(event_pattern: str) -> str:
    """``finance.*`` as the SQL LIKE clause ``sys.Label LIKE 'finance.%'`` (with escapes)."""
    needs_escape = "%" in event_pattern or "_" in event_pattern
    escaped = event_pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    literal = escaped.replace("*", "%").replace("'", "''")
    if "*" not in event_pattern:
        return f"sys.Label = '{event_pattern}'"
    return f"sys.Label LIKE '{literal}'" + (" ESCAPE '\\'" if needs_escape else "")


def agent_rule_sql(agent: AgentConfig, topic: str) -> str | None:
    """The filter that selects the events ``agent`` subscribes to on ``topic``."""
    clauses = [
        like_pattern(pattern)
        for subscription in agent.subscriptions
        if subscription.topic == topic
        for pattern in subscription.event_types
    ]
    return " OR ".join(dict.fromkeys(clauses)) or None


def build_topology(configs: ConfigSet) -> tuple[dict[str, Any], list[Problem]]:
    """Topology JSON for the enabled agents in ``configs``, and problems (over-long filters)."""
    problems: list[Problem] = []
    agents = [agent for agent in configs.agents.values() if agent.enabled]
    event_topics = sorted(
        {AGENT_EVENTS} | {s.topic for agent in agents for s in agent.subscriptions}
    )
    topics: list[dict[str, Any]] = []
    for topic in event_topics:
        rules: list[dict[str, str]] = []
        if topic == AGENT_EVENTS:
            rules.append({"name": "direct", "sql": "sys.To IS NOT NULL"})
        for agent in sorted(agents, key=lambda a: a.id):
            sql = agent_rule_sql(agent, topic)
            if sql is None:
                continue
            if len(sql) > MAX_SQL_FILTER_CHARS:
                source = configs.source("agent", agent.id)
                problems.append(
                    Problem(
                        file=source.file,
                        line=source.line,
                        path="$.subscriptions",
                        message=f"the filter for topic '{topic}' is {len(sql)} characters; "
                        f"Service Bus allows {MAX_SQL_FILTER_CHARS}: use broader event type patterns",
                        code="filter-too-long",
                    )
                )
                continue
            rules.append({"name": f"agent-{agent.id}", "sql": sql})
        topics.append(
            {
                "name": topic,
                "subscriptions": [
                    _subscription(REALM_SUBSCRIPTION, rules or [{"name": "none", "sql": "1=0"}])
                ],
            }
        )
    topics.append({"name": AGENT_OUTPUTS, "subscriptions": [_subscription(KERNEL_SUBSCRIPTION, [])]})
    topics.append({"name": MCP_REQUESTS, "subscriptions": [_subscription(GATEWAY_SUBSCRIPTION, [])]})
    topics.append({"name": MCP_RESPONSES, "subscriptions": [_subscription(KERNEL_SUBSCRIPTION, [])]})
    return {"topics": topics, "queues": []}, problems


def _subscription(name: str, rules: list[dict[str, str]]) -> dict[str, Any]:
    """Empty ``rules`` means the default TrueFilter: every message on the topic."""
    return {"name": name, "rules": rules, "max_delivery_count": MAX_DELIVERY_COUNT}
