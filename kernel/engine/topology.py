"""Bus topology: what the app's triggers imply, plus subscriptions and filters from settings.

Every queue, topic and subscription named by one of the app's own trigger bindings exists
implicitly, so any app runs without setup. More entities and rules come from an explicit
``topology=`` argument or the ``AOS_TOPOLOGY`` setting (a JSON file in the shape ``aos topology``
emits). Declarations from the topology are applied after the implicit ones and win.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Mapping

from .bus import CorrelationRule, EmbeddedBus, SqlRule
from .indexing import AppIndex
from .settings import Settings, read_json_file


class TopologyError(ValueError):
    """A topology document that cannot be applied."""


def load_topology(source: Mapping[str, Any] | str | Path | None, settings: Settings) -> dict[str, Any] | None:
    if source is None:
        configured = settings.get("AOS_TOPOLOGY")
        if not configured:
            return None
        source = configured
    if isinstance(source, Mapping):
        return dict(source)
    path = Path(source)
    document = read_json_file(path, "topology file", TopologyError)
    if not isinstance(document, dict):
        raise TopologyError(f"topology file {path} must hold a JSON object")
    return document


def _rule(raw: Mapping[str, Any], where: str) -> SqlRule | CorrelationRule:
    name = raw.get("name")
    if not name:
        raise TopologyError(f"{where}: every rule needs a name")
    if "sql" in raw:
        return SqlRule.unchecked(str(name), str(raw["sql"]))  # checked by the bus if new
    correlation = raw.get("correlation")
    if isinstance(correlation, Mapping):
        fields = {k: correlation.get(k) for k in ("correlation_id", "message_id", "to", "reply_to", "subject",
                                                    "session_id", "content_type")}
        return CorrelationRule(str(name), **fields, application_properties=dict(correlation.get("properties") or {}))
    raise TopologyError(f"{where}: rule '{name}' needs 'sql' or 'correlation'")


def declare(bus: EmbeddedBus, index: AppIndex, topology: Mapping[str, Any] | None) -> None:
    """Declare implicit entities from the app's triggers, then the topology's. An entity the
    topology declares is declared once, as the topology says: declaring a subscription first with
    the implicit rule and then with its own would index its rules again at every declaration (ten
    thousand agents' rules, twice, at every start and every config change)."""
    declared = _declared_by(topology)
    for spec in index.by_trigger("serviceBusTrigger"):
        trigger = spec.trigger
        if trigger.get("queueName"):
            if ("queue", str(trigger["queueName"]).lower()) not in declared:
                bus.declare_queue(str(trigger["queueName"]))
        elif ("subscription", f"{trigger['topicName']}/{trigger['subscriptionName']}".lower()) not in declared:
            bus.declare_subscription(str(trigger["topicName"]), str(trigger["subscriptionName"]))
    if not topology:
        return
    for queue in topology.get("queues", []) or []:
        bus.declare_queue(str(queue["name"]), max_delivery_count=int(queue.get("max_delivery_count", 10)),
                          lock_duration=timedelta(seconds=float(queue.get("lock_duration_seconds", 60))))
    for topic in topology.get("topics", []) or []:
        bus.declare_topic(str(topic["name"]))
        for sub in topic.get("subscriptions", []) or []:
            where = f"topic '{topic['name']}' subscription '{sub.get('name')}'"
            rules = [_rule(r, where) for r in sub.get("rules", []) or []]
            bus.declare_subscription(str(topic["name"]), str(sub["name"]), rules=rules or None,
                                     max_delivery_count=int(sub.get("max_delivery_count", 10)),
                                     lock_duration=timedelta(seconds=float(sub.get("lock_duration_seconds", 60))))


def _declared_by(topology: Mapping[str, Any] | None) -> set[tuple[str, str]]:
    """``("queue", name)`` and ``("subscription", "topic/name")`` of what ``topology`` declares
    (lowercase: entity names are case-insensitive)."""
    if not topology:
        return set()
    found = {("queue", str(queue.get("name", "")).lower()) for queue in topology.get("queues", []) or []}
    for topic in topology.get("topics", []) or []:
        for sub in topic.get("subscriptions", []) or []:
            found.add(("subscription", f"{topic.get('name', '')}/{sub.get('name', '')}".lower()))
    return found
