"""The Service Bus topics, subscriptions and filters that the configs imply.

The apps talk only through these topics. The realm's subscription on each events topic carries
one rule per agent (rules without actions are OR-ed by Service Bus, so a message arrives once), so
an event that no agent wants never wakes the app. Directly addressed events (``to`` set) always
reach the realm, which reports addressees that do not exist instead of losing the event.
The same JSON feeds the embedded engine, `aos topology`, the Bicep parameters
(``bicep_parameters``) and the Service Bus emulator's Config.json (``emulator_config``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernel.config.loader import ConfigSet
from kernel.config.models import DEFAULT_EVENTS_TOPIC, AgentConfig, AgentRouting
from kernel.config.problems import Problem

AGENT_EVENTS = DEFAULT_EVENTS_TOPIC
AGENT_OUTPUTS = "agent-outputs"
MCP_REQUESTS = "mcp-requests"
MCP_RESPONSES = "mcp-responses"

REALM_SUBSCRIPTION = "realm"
KERNEL_SUBSCRIPTION = "kernel"
GATEWAY_SUBSCRIPTION = "mcp-gateway"
#: The kernel's subscription on agent-events: broadcast events that start workflow runs.
WORKFLOWS_SUBSCRIPTION = "workflows"
MAX_DELIVERY_COUNT = 10
#: Peek-lock duration per subscription. The Functions host renews a lock while its function runs
#: (host.json ``maxAutoLockRenewalDuration``), so the lock duration only says how soon a message
#: held by a crashed instance is delivered again. The realm's wake and the kernel's routing finish
#: in seconds: one minute. A gateway delivery lasts as long as its tool call (up to the server's
#: call timeout), so its lock is the longest Service Bus allows: fewer renewals per call, and the
#: embedded engine, which does not renew locks, lets calls of up to five minutes finish before it
#: delivers the request again. A second delivery never repeats a call: the gateway's claim row,
#: renewed every two seconds by the live caller, makes it wait for the first call's result.
LOCK_SECONDS = {REALM_SUBSCRIPTION: 60, KERNEL_SUBSCRIPTION: 60, GATEWAY_SUBSCRIPTION: 300, WORKFLOWS_SUBSCRIPTION: 60}
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


def agent_rule_sql(agent: AgentConfig | AgentRouting, topic: str) -> str | None:
    """The filter that selects the events ``agent`` subscribes to on ``topic``."""
    clauses = [
        like_pattern(pattern)
        for subscription in agent.subscriptions
        if subscription.topic == topic
        for pattern in subscription.event_types
    ]
    return " OR ".join(dict.fromkeys(clauses)) or None


def build_topology(configs: ConfigSet) -> tuple[dict[str, Any], list[Problem]]:
    """Topology JSON for the enabled agents in ``configs``, and problems (over-long filters).

    One pass over the agents in address order, each config read once and let go (ten thousand
    declared agents are never all built at once)."""
    problems: list[Problem] = []
    agent_rules: dict[str, list[dict[str, str]]] = {AGENT_EVENTS: []}
    for address, agent in configs.agents.each_as(AgentRouting):
        if not agent.enabled:
            continue
        for topic in dict.fromkeys(s.topic for s in agent.subscriptions):
            rules = agent_rules.setdefault(topic, [])
            sql = agent_rule_sql(agent, topic)
            if sql is None:
                continue
            if len(sql) > MAX_SQL_FILTER_CHARS:
                source = configs.source("agent", address)
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
            rules.append({"name": f"agent-{address}", "sql": sql})
    topics: list[dict[str, Any]] = []
    for topic in sorted(agent_rules):
        rules = ([{"name": "direct", "sql": "sys.To IS NOT NULL"}] if topic == AGENT_EVENTS else []) + agent_rules[topic]
        subscriptions = [_subscription(REALM_SUBSCRIPTION, rules or [{"name": "none", "sql": "1=0"}])]
        if topic == AGENT_EVENTS:
            subscriptions.append(_subscription(WORKFLOWS_SUBSCRIPTION, workflow_rules(configs)))
        topics.append({"name": topic, "subscriptions": subscriptions})
    topics.append({"name": AGENT_OUTPUTS, "subscriptions": [_subscription(KERNEL_SUBSCRIPTION, [])]})
    topics.append({"name": MCP_REQUESTS, "subscriptions": [_subscription(GATEWAY_SUBSCRIPTION, [])]})
    topics.append({"name": MCP_RESPONSES, "subscriptions": [_subscription(KERNEL_SUBSCRIPTION, [])]})
    return {"topics": topics, "queues": []}, problems


def workflow_rules(configs: ConfigSet) -> list[dict[str, str]]:
    """One rule per enabled workflow with trigger events: broadcast events (no ``To``) of those types."""
    rules = []
    for address, workflow in sorted(configs.workflows.items()):
        if workflow.enabled and workflow.trigger is not None and workflow.trigger.events:
            types = " OR ".join(dict.fromkeys(like_pattern(pattern) for pattern in workflow.trigger.events))
            rules.append({"name": f"workflow-{address}", "sql": f"sys.To IS NULL AND ({types})"})
    return rules or [{"name": "none", "sql": "1=0"}]


def _subscription(name: str, rules: list[dict[str, str]]) -> dict[str, Any]:
    """Empty ``rules`` means the default TrueFilter: every message on the topic."""
    return {"name": name, "rules": rules, "max_delivery_count": MAX_DELIVERY_COUNT,
            "lock_duration_seconds": LOCK_SECONDS[name]}


# -- the same topology in the files that deploy it --------------------------------------------------

ARM_PARAMETERS_SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"
#: The Service Bus emulator serves exactly one namespace, with this name.
EMULATOR_NAMESPACE = "sbemulatorns"
#: The emulator's documented limits (Config.json, emulator overview): more is refused at start-up.
EMULATOR_MAX_ENTITIES = 50
EMULATOR_MAX_SUBSCRIPTIONS = 50
EMULATOR_MAX_RULES_PER_TOPIC = 1000
EMULATOR_MAX_DELIVERY_COUNT = 10
EMULATOR_LOCK_SECONDS = (60, 300)
#: The emulator's maximum message time to live and duplicate detection window.
EMULATOR_TTL = "PT1H"
EMULATOR_DUPLICATE_WINDOW = "PT5M"


class TopologyError(ValueError):
    """A topology that a deployment target cannot hold (the message names the entity and the limit)."""


def bicep_parameters(topology: Mapping[str, Any]) -> dict[str, Any]:
    """The ARM deployment parameters file infra/main.bicepparam loads (its ``topology`` parameter)."""
    return {"$schema": ARM_PARAMETERS_SCHEMA, "contentVersion": "1.0.0.0",
            "parameters": {"topology": {"value": topology}}}


def iso_duration(seconds: int) -> str:
    """``60`` as ``PT1M``, ``90`` as ``PT90S``: the ISO 8601 form Service Bus documents use."""
    return f"PT{seconds // 60}M" if seconds % 60 == 0 else f"PT{seconds}S"


def emulator_config(topology: Mapping[str, Any]) -> dict[str, Any]:
    """The Service Bus emulator's Config.json for ``topology`` (UserConfig.Namespaces[0]: topics,
    subscriptions, SQL rules), within the emulator's limits or a :class:`TopologyError`."""
    queues = list(topology.get("queues") or [])
    topics = list(topology.get("topics") or [])
    if len(queues) + len(topics) > EMULATOR_MAX_ENTITIES:
        raise TopologyError(f"{len(queues) + len(topics)} queues and topics; the Service Bus emulator "
                            f"holds at most {EMULATOR_MAX_ENTITIES}")
    if queues:
        raise TopologyError("the topology declares queues; the emulator config (like infra/) has none yet")
    return {"UserConfig": {
        "Namespaces": [{"Name": EMULATOR_NAMESPACE, "Queues": [], "Topics": [_emulator_topic(t) for t in topics]}],
        "Logging": {"Type": "Console"},
    }}


def _emulator_topic(topic: Mapping[str, Any]) -> dict[str, Any]:
    name = str(topic["name"])
    subscriptions = list(topic.get("subscriptions") or [])
    if not 1 <= len(subscriptions) <= EMULATOR_MAX_SUBSCRIPTIONS:
        raise TopologyError(f"topic '{name}' has {len(subscriptions)} subscriptions; the Service Bus emulator "
                            f"needs 1 to {EMULATOR_MAX_SUBSCRIPTIONS}")
    rules = sum(len(s.get("rules") or []) for s in subscriptions)
    if rules > EMULATOR_MAX_RULES_PER_TOPIC:
        raise TopologyError(f"topic '{name}' has {rules} rules; the Service Bus emulator holds at most "
                            f"{EMULATOR_MAX_RULES_PER_TOPIC} per topic")
    return {
        "Name": name,
        "Properties": {"DefaultMessageTimeToLive": EMULATOR_TTL, "RequiresDuplicateDetection": True,
                       "DuplicateDetectionHistoryTimeWindow": EMULATOR_DUPLICATE_WINDOW},
        "Subscriptions": [_emulator_subscription(name, s) for s in subscriptions],
    }


def _emulator_subscription(topic: str, sub: Mapping[str, Any]) -> dict[str, Any]:
    where = f"topic '{topic}' subscription '{sub['name']}'"
    deliveries = int(sub.get("max_delivery_count", MAX_DELIVERY_COUNT))
    if not 1 <= deliveries <= EMULATOR_MAX_DELIVERY_COUNT:
        raise TopologyError(f"{where}: max_delivery_count {deliveries}; the Service Bus emulator allows "
                            f"1 to {EMULATOR_MAX_DELIVERY_COUNT}")
    lock = int(sub.get("lock_duration_seconds", 60))
    low, high = EMULATOR_LOCK_SECONDS
    if not low <= lock <= high:
        raise TopologyError(f"{where}: lock_duration_seconds {lock}; the Service Bus emulator allows {low} to {high}")
    rules = []
    for rule in sub.get("rules") or []:
        if "sql" not in rule:
            raise TopologyError(f"{where}: rule '{rule.get('name')}' has no 'sql'; only SQL filters are written")
        rules.append({"Name": str(rule["name"]),
                      "Properties": {"FilterType": "Sql", "SqlFilter": {"SqlExpression": str(rule["sql"])}}})
    return {
        "Name": str(sub["name"]),
        "Properties": {"DeadLetteringOnMessageExpiration": True, "DefaultMessageTimeToLive": EMULATOR_TTL,
                       "LockDuration": iso_duration(lock), "MaxDeliveryCount": deliveries,
                       "ForwardDeadLetteredMessagesTo": "", "ForwardTo": "", "RequiresSession": False},
        # No rules: the emulator, like Service Bus, gives the subscription the $Default TrueFilter.
        "Rules": rules,
    }
