"""The Service Bus topology in Bicep comes from the configs, through infra/topology.parameters.json."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner

from kernel.cli import main as aos
from kernel.topology import ARM_PARAMETERS_SCHEMA, bicep_parameters
from infra_checks import REGENERATE, REPO, TOPOLOGY_PARAMETERS, body, current_topology, default, render, topology_parameter, tree


def test_parameter_file_has_the_arm_parameters_shape() -> None:
    document = json.loads(TOPOLOGY_PARAMETERS.read_text())
    assert document["$schema"] == ARM_PARAMETERS_SCHEMA
    assert document["contentVersion"] == "1.0.0.0"
    assert set(document["parameters"]) == {"topology"}
    assert set(document["parameters"]["topology"]) == {"value"}


def test_parameter_file_matches_aos_topology_output(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(aos, ["topology"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert topology_parameter() == printed, f"infra/topology.parameters.json drifted from `aos topology`; {REGENERATE}"
    assert TOPOLOGY_PARAMETERS.read_text() == render(bicep_parameters(current_topology())), f"not in canonical form; {REGENERATE}"


def test_aos_topology_writes_and_checks_the_parameter_file(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    target = tmp_path / "params.json"
    checked = CliRunner().invoke(aos, ["topology", "--bicep-params", str(target), "--check"])
    assert checked.exit_code == 1 and "differs from the configs" in checked.stderr
    written = CliRunner().invoke(aos, ["topology", "--bicep-params", str(target)])
    assert written.exit_code == 0, written.output
    assert target.read_text() == TOPOLOGY_PARAMETERS.read_text()
    again = CliRunner().invoke(aos, ["topology", "--bicep-params", str(TOPOLOGY_PARAMETERS), "--check"])
    assert again.exit_code == 0, f"{again.stderr}{REGENERATE}"
    assert "match the configs" in again.stdout


def test_every_topic_subscription_and_rule_of_aos_topology_is_declared() -> None:
    declared = topology_parameter()
    expected = current_topology()
    pairs = lambda doc: {(t["name"], s["name"]) for t in doc["topics"] for s in t["subscriptions"]}  # noqa: E731
    rules = lambda doc: {  # noqa: E731
        (t["name"], s["name"], r["name"], r["sql"]) for t in doc["topics"] for s in t["subscriptions"] for r in s["rules"]
    }
    assert {t["name"] for t in expected["topics"]} <= {t["name"] for t in declared["topics"]}
    assert pairs(expected) <= pairs(declared)
    assert rules(expected) <= rules(declared)


def test_main_feeds_the_parameter_to_the_service_bus_module() -> None:
    main = tree("main.bicep")
    assert main["parameters"]["topology"]["type"] == "object"
    assert main["variables"]["topics"]["value"] == {
        "operator": {"type": "property_accessor", "operands": {"operand_1": "topology", "operand_2": "topics"}}
    }
    assert "'topics'" in repr(body(main["modules"]["serviceBus"])["params"]["topicNames"])
    bicepparam = (REPO / "infra" / "main.bicepparam").read_text()
    assert "loadJsonContent('topology.parameters.json').parameters.topology.value" in bicepparam


def test_service_bus_module_declares_topics_subscriptions_and_sql_rules_from_the_parameter() -> None:
    main = tree("main.bicep")
    params = body(main["modules"]["serviceBus"])["params"]
    assert params["subscriptions"] == "subscriptions" and params["rules"] == "rules"
    assert "topics" in repr(params["topicNames"])
    flattened = repr(main["variables"]["subscriptions"]) + repr(main["variables"]["rules"])
    for field in ("max_delivery_count", "lock_duration_seconds", "'sql'", "'rules'", "'subscriptions'"):
        assert field in flattened, field
    bus = tree("modules/servicebus.bicep")
    resources = bus["resources"]
    loops = {name: resources[name]["config"]["loop_type"]["detail"]["array_name"] for name in
             ("topicResources", "subscriptionResources", "ruleResources", "defaultRuleOverrides")}
    assert loops == {
        "topicResources": "topicNames",
        "subscriptionResources": "subscriptions",
        "ruleResources": "rules",
        "defaultRuleOverrides": "subscriptions",
    }
    assert "hasRules" in repr(resources["defaultRuleOverrides"]["config"]["condition"])
    rule = body(resources["ruleResources"])["properties"]
    assert rule["filterType"] == "SqlFilter"
    assert body(resources["subscriptionResources"])["properties"]["maxDeliveryCount"] is not None
    # Subscriptions with their own rules must not keep the TrueFilter `$Default` rule.
    assert body(resources["defaultRuleOverrides"])["name"].endswith("/$Default")
    assert body(resources["defaultRuleOverrides"])["properties"]["sqlFilter"]["sqlExpression"] == "1=0"


def test_topology_fits_service_bus_limits_and_the_bicep_template() -> None:
    topology = topology_parameter()
    assert topology.get("queues", []) == [], "servicebus.bicep declares no queues yet; add them before using queues"
    name = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,49}$")
    for topic in topology["topics"]:
        assert name.match(topic["name"]), topic["name"]
        for sub in topic["subscriptions"]:
            assert name.match(sub["name"]), sub["name"]
            assert 1 <= sub["max_delivery_count"] <= 2000
            assert isinstance(sub["lock_duration_seconds"], int) and 5 <= sub["lock_duration_seconds"] <= 300
            for rule in sub["rules"]:
                assert name.match(rule["name"]) and rule["name"] != "$Default", rule["name"]
                assert 0 < len(rule["sql"]) <= 1024


def test_every_subscription_has_an_owning_app_and_every_sent_topic_exists() -> None:
    main = tree("main.bicep")
    owners = {key.strip("'"): value for key, value in default(main, "subscriptionOwners").items()}
    senders = default(main, "sendTopicsByRole")
    topology = topology_parameter()
    topics = {t["name"] for t in topology["topics"]}
    assert set(owners.values()) == {"kernel", "realm", "mcp"}
    for topic in topology["topics"]:
        for sub in topic["subscriptions"]:
            assert sub["name"] in owners, f"subscription '{sub['name']}' on '{topic['name']}' has no app in subscriptionOwners"
    assert set(senders) == {"kernel", "realm", "mcp"}
    for role, sent in senders.items():
        assert set(sent) <= topics, f"{role} sends to topics the topology does not declare: {set(sent) - topics}"


def test_each_app_may_send_to_every_topic_its_code_sends_to() -> None:
    """Scan each role's package for ``.send(TOPIC, ...)`` calls: a missing Data Sender grant only
    shows up in Azure, as a 401 on the first message."""
    from kernel import topology as names

    constants = {name: value for name, value in vars(names).items() if name.isupper() and isinstance(value, str)}
    packages = {"kernel": "kernel", "realm": "realm_of_agents", "mcp": "mcp_servers"}
    senders = default(tree("main.bicep"), "sendTopicsByRole")
    for role, package in packages.items():
        sent = set()
        for path in (REPO / package).rglob("*.py"):
            if "engine" in path.parts or path.name == "demo.py":  # the embedded engine and the local demo
                continue
            for constant in re.findall(r"sender\.send\(\s*([A-Z_]+)", path.read_text()):
                sent.add(constants[constant])
        assert sent <= set(senders[role]), f"{role} sends to {sorted(sent - set(senders[role]))} without a grant"
        assert sent, f"found no sends in {package}: the scan is broken"
