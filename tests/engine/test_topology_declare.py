"""Declaring the topology again (every start, every config change) must not redo work on rules
that did not change, and must still refuse a bad rule."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from kernel.config import load_configs
from kernel.engine.bus import EmbeddedBus
from kernel.engine.sqlfilter import SqlFilterError
from kernel.engine.topology import declare
from kernel.topology import AGENT_EVENTS, REALM_SUBSCRIPTION, build_topology


class _Triggers:
    """The app's Service Bus triggers as the engine's index lists them (the realm's, here)."""

    def by_trigger(self, trigger_type: str) -> list[SimpleNamespace]:
        assert trigger_type == "serviceBusTrigger"
        return [SimpleNamespace(trigger={"topicName": AGENT_EVENTS, "subscriptionName": REALM_SUBSCRIPTION})]


@pytest.fixture
def bus() -> Iterator[EmbeddedBus]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    try:
        yield EmbeddedBus(connection)
    finally:
        connection.close()


def _topology(folder: Path, agents: int) -> dict:
    folder.mkdir()
    for n in range(agents):
        (folder / f"a{n:03d}.json").write_text(json.dumps({
            "kind": "agent", "id": f"a{n:03d}", "display_name": f"Agent {n}",
            "purpose": "Keep the ledger current and explain changes.",
            "subscriptions": [{"event_types": [f"ledger.{n}.*", f"audit.{n}"]}]}))
    document, problems = build_topology(load_configs([folder]))
    assert not problems
    return document


def test_declaring_the_same_topology_again_leaves_the_rules_and_their_index_alone(bus: EmbeddedBus,
                                                                                 tmp_path: Path) -> None:
    agents = 200
    document = _topology(tmp_path / "configs", agents)
    declare(bus, _Triggers(), document)
    rules = bus.entities()["topics"][AGENT_EVENTS]["subscriptions"][REALM_SUBSCRIPTION]["rules"]
    assert len(rules) == agents + 1  # and the rule for events sent to one agent

    before = bus._conn.total_changes
    declare(bus, _Triggers(), document)
    # A few rows of entity settings; neither the rules nor the label index (two rows per agent) are
    # written again, as they were when the trigger's implicit rule was declared first each time.
    assert bus._conn.total_changes - before < agents
    assert bus.entities()["topics"][AGENT_EVENTS]["subscriptions"][REALM_SUBSCRIPTION]["rules"] == rules


def test_a_bad_rule_in_a_topology_is_refused_when_declared(bus: EmbeddedBus) -> None:
    document = {"topics": [{"name": "events", "subscriptions": [
        {"name": "s", "rules": [{"name": "ok", "sql": "colour = 'red'"}, {"name": "bad", "sql": "(colour = 'blue'"}]}]}]}
    with pytest.raises(SqlFilterError, match=r"expected '\)', found end of filter at column 17"):
        declare(bus, _Triggers(), document)
    assert "s" not in bus.entities()["topics"].get("events", {}).get("subscriptions", {})
