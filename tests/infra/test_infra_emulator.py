"""The local emulators for `func start`: the Service Bus emulator's Config.json and docker-compose.yml.

Docker cannot run here, so these check what can be checked offline: the committed Config.json is
what `aos topology --emulator-config` writes from the configs, it has the emulator's documented
shape (tests/infra/servicebus-emulator-config.schema.json, written from its docs), it declares
what the Bicep declares, and docker-compose.yml is a valid Compose file that mounts it.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from infra_checks import EMULATOR_CONFIG, REGENERATE, REPO, current_topology, render, topology_parameter
from kernel.cli import main as aos
from kernel.topology import TopologyError, emulator_config, iso_duration

SCHEMA = Path(__file__).with_name("servicebus-emulator-config.schema.json")
COMPOSE = REPO / "docker-compose.yml"
EMULATOR_MOUNT = "/ServiceBus_Emulator/ConfigFiles/Config.json"


def _validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def _errors(document: dict) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in _validator().iter_errors(document)]


def _committed() -> dict:
    return json.loads(EMULATOR_CONFIG.read_text())


def _compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_committed_config_is_what_aos_topology_writes(monkeypatch) -> None:
    assert EMULATOR_CONFIG.read_text() == render(emulator_config(current_topology())), f"emulator/Config.json drifted; {REGENERATE}"
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(aos, ["topology", "--emulator-config", str(EMULATOR_CONFIG), "--check"])
    assert result.exit_code == 0, result.output


def test_committed_config_has_the_documented_shape() -> None:
    assert _errors(_committed()) == []
    (namespace,) = _committed()["UserConfig"]["Namespaces"]
    assert len(namespace["Queues"]) + len(namespace["Topics"]) <= 50, "the emulator holds at most 50 queues and topics"


@pytest.mark.parametrize("mutate, complaint", [
    (lambda ns: ns.update(Name="aos"), "Name"),
    (lambda ns: ns["Topics"][0]["Subscriptions"][0]["Properties"].update(LockDuration="PT10M"), "LockDuration"),
    (lambda ns: ns["Topics"][0]["Subscriptions"][0]["Properties"].update(MaxDeliveryCount=11), "MaxDeliveryCount"),
    (lambda ns: ns["Topics"][0]["Subscriptions"][0]["Rules"][0]["Properties"].update(FilterType="SqlFilter"), "FilterType"),
    (lambda ns: ns["Topics"][0]["Subscriptions"][0]["Rules"][0]["Properties"].pop("SqlFilter"), "Properties"),
    (lambda ns: ns["Topics"][0].update(Subscriptions=[]), "Subscriptions"),
    (lambda ns: ns["Topics"][0].update(Subcriptions=[]), "Topics/0"),
    (lambda ns: ns["Topics"][0]["Properties"].update(DefaultMessageTimeToLive="P14D"), "DefaultMessageTimeToLive"),
])
def test_the_schema_refuses_what_the_emulator_rejects_or_silently_drops(mutate, complaint) -> None:
    document = copy.deepcopy(_committed())
    mutate(document["UserConfig"]["Namespaces"][0])
    errors = _errors(document)
    assert errors and any(complaint in error for error in errors), errors


def test_emulator_declares_the_topology_the_bicep_declares() -> None:
    (namespace,) = _committed()["UserConfig"]["Namespaces"]
    emulated = {(t["Name"], s["Name"]): s for t in namespace["Topics"] for s in t["Subscriptions"]}
    declared = {(t["name"], s["name"]): s for t in topology_parameter()["topics"] for s in t["subscriptions"]}
    assert set(emulated) == set(declared)
    for key, sub in declared.items():
        properties = emulated[key]["Properties"]
        assert properties["MaxDeliveryCount"] == sub["max_delivery_count"], key
        assert properties["LockDuration"] == iso_duration(sub["lock_duration_seconds"]), key
        rules = [(r["Name"], r["Properties"]["FilterType"], r["Properties"]["SqlFilter"]["SqlExpression"])
                 for r in emulated[key]["Rules"]]
        assert rules == [(r["name"], "Sql", r["sql"]) for r in sub["rules"]], key


def _topology(topics: int = 1, **subscription) -> dict:
    sub = {"name": "s", "rules": [], "max_delivery_count": 10, "lock_duration_seconds": 60, **subscription}
    return {"topics": [{"name": f"t{n}", "subscriptions": [sub]} for n in range(topics)], "queues": []}


@pytest.mark.parametrize("topology, message", [
    (_topology(topics=51), "at most 50"),
    (_topology(max_delivery_count=11), "max_delivery_count 11"),
    (_topology(lock_duration_seconds=30), "lock_duration_seconds 30"),
    (_topology(rules=[{"name": "c", "correlation": {"subject": "x"}}]), "rule 'c' has no 'sql'"),
    ({"topics": [{"name": "t", "subscriptions": []}], "queues": []}, "needs 1 to 50"),
])
def test_topologies_the_emulator_cannot_hold_are_refused_with_the_entity_named(topology, message) -> None:
    with pytest.raises(TopologyError, match=message):
        emulator_config(topology)


def test_lock_durations_are_written_as_service_bus_documents_them() -> None:
    assert [iso_duration(s) for s in (60, 300, 90, 5)] == ["PT1M", "PT5M", "PT90S", "PT5S"]


def test_aos_topology_reports_an_unholdable_topology_and_writes_nothing(tmp_path) -> None:
    configs = tmp_path / "agent_configs"
    configs.mkdir()
    for n in range(50):  # 50 event topics plus the three platform topics
        (configs / f"a{n}.yaml").write_text(
            f"id: a{n}\ndisplay_name: A\npurpose: p\nsubscriptions: [{{topic: events-{n}, event_types: ['x.*']}}]\n")
    target = tmp_path / "Config.json"
    result = CliRunner().invoke(aos, ["topology", str(configs), "--emulator-config", str(target)])
    assert result.exit_code == 1
    assert "the Service Bus emulator holds at most 50" in result.stderr
    assert not target.exists()


def test_docker_compose_is_a_valid_compose_file() -> None:
    check = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run([str(check), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_docker_compose_runs_the_emulators_with_the_generated_config() -> None:
    services = _compose()["services"]
    assert {"azurite", "servicebus", "sqlserver"} <= set(services)
    bus = services["servicebus"]
    assert bus["image"].startswith("mcr.microsoft.com/azure-messaging/servicebus-emulator:")
    (mount,) = [v for v in bus["volumes"] if v.split(":")[1] == EMULATOR_MOUNT]
    assert (REPO / mount.split(":")[0]).resolve() == EMULATOR_CONFIG.resolve()
    assert "5672:5672" in bus["ports"]
    sql = bus["environment"]["SQL_SERVER"]
    assert sql in services and sql in bus["depends_on"]
    assert services[sql]["image"].startswith("mcr.microsoft.com/mssql/server:")
    for name in ("ACCEPT_EULA", "MSSQL_SA_PASSWORD"):
        # The licence and the SQL password come from the user's environment, never from the file.
        assert bus["environment"][name].startswith(f"${{{name}:?") and services[sql]["environment"][name] == bus["environment"][name]
    azurite = services["azurite"]
    assert {"10000:10000", "10001:10001", "10002:10002"} <= set(azurite["ports"])
    assert "0.0.0.0" in azurite["command"] and "--location" in azurite["command"]
    package = json.loads((REPO / "package.json").read_text())
    pinned = {**package.get("dependencies", {}), **package.get("devDependencies", {})}["azurite"]
    assert azurite["image"].endswith(f":{pinned}"), "the Azurite image and the npm package the tests run should match"


def test_optional_durable_task_scheduler_emulator_serves_the_local_hubs() -> None:
    dts = _compose()["services"]["dts"]
    assert dts["profiles"] == ["dts"]
    hubs = dts["environment"]["DTS_TASK_HUB_NAMES"].split(",")
    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    assert sample["AOS_TASK_HUB"] in hubs and sample["AOS_REALM_TASK_HUB"] in hubs
    assert {f"aos{role}" for role in ("kernel", "realm", "mcp")} <= set(hubs)


def test_local_settings_sample_points_at_the_emulators() -> None:
    sample = json.loads((REPO / "local.settings.sample.json").read_text())["Values"]
    assert sample["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    connection = dict(part.split("=", 1) for part in sample["ServiceBusConnection"].split(";") if part)
    assert connection["Endpoint"] == "sb://localhost" and connection["UseDevelopmentEmulator"] == "true"
