"""The subscription index answers exactly what matching every agent's patterns would."""

from __future__ import annotations

import fnmatch
import json
from pathlib import Path

from kernel.config import load_configs
from kernel.config.models import DEFAULT_EVENTS_TOPIC
from kernel.config.subscribers import Subscribers

PATTERNS = {
    "exact": ["invoice.paid"],
    "prefix": ["invoice.*"],
    "bare-prefix": ["invoice*"],
    "everything": ["*"],
    "suffix": ["*.paid"],
    "middle": ["invoice.*.eu"],
    "two-stars": ["in**"],
    "several": ["ledger.*", "invoice.paid", "invoice.paid"],
    "other-topic": [],
    "disabled": ["invoice.*"],
}
EVENT_TYPES = ["invoice.paid", "invoice.sent", "invoice", "invoicex", "invoice.x.eu", "ledger.posted", "receipt.paid",
               "paid", "", "i", "invoice.paid.late"]


def _write_agents(folder: Path) -> None:
    for agent_id, patterns in PATTERNS.items():
        subscriptions = [{"event_types": patterns}] if patterns else []
        if agent_id == "other-topic":
            subscriptions = [{"topic": "audit-events", "event_types": ["invoice.*"]}]
        document = {"kind": "agent", "id": agent_id, "display_name": agent_id, "purpose": "Watch invoices and ledgers for the finance team.",
                    "subscriptions": subscriptions, "enabled": agent_id != "disabled"}
        (folder / f"{agent_id}.json").write_text(json.dumps(document))


def _by_matching_every_pattern(configs, topic: str, event_type: str) -> list[str]:
    return sorted(address for address, agent in configs.agents.items() if agent.enabled and any(
        s.topic == topic and any(fnmatch.fnmatchcase(event_type, p) for p in s.event_types)
        for s in agent.subscriptions))


def test_the_index_finds_exactly_the_agents_whose_patterns_match(tmp_path: Path) -> None:
    _write_agents(tmp_path)
    configs = load_configs([tmp_path])
    assert configs.ok, configs.problems
    index = configs.subscribers()  # built from each agent's routing fields only (AgentRouting)
    whole = Subscribers(configs.agents.each())  # built from the whole documents
    for topic in (DEFAULT_EVENTS_TOPIC, "audit-events", "nothing-here"):
        for event_type in EVENT_TYPES:
            expected = _by_matching_every_pattern(configs, topic, event_type)
            assert index.of(topic, event_type) == whole.of(topic, event_type) == expected, (topic, event_type)
    # the cases the table is about, spelled out
    assert index.of(DEFAULT_EVENTS_TOPIC, "invoice.paid") == [
        "bare-prefix", "everything", "exact", "prefix", "several", "suffix", "two-stars"]
    assert index.of(DEFAULT_EVENTS_TOPIC, "invoice") == ["bare-prefix", "everything", "two-stars"]
    assert index.of("audit-events", "invoice.sent") == ["other-topic"]


def test_a_config_set_builds_its_index_once(tmp_path: Path) -> None:
    _write_agents(tmp_path)
    configs = load_configs([tmp_path])
    assert configs.subscribers() is configs.subscribers()
