"""Namespaces in config: addresses, ids unique per namespace, unknown namespaces, routes, quotas."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernel import namespaces as ns
from kernel.config.loader import ConfigSet, load_configs
from kernel.governance.quota import admit_agents
from kernel.messages import Envelope
from realm_of_agents.routing import route


def _write(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document, indent=2))


def _agent(agent_id: str, namespace: str | None = None, **fields: Any) -> dict[str, Any]:
    return {"kind": "agent", "id": agent_id, "display_name": agent_id.title(), "purpose": "Keep the ledger current.",
            **({"namespace": namespace} if namespace else {}), **fields}


def _namespace(name: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "namespace", "id": name, **fields}


SERVER = {"kind": "mcp_server", "id": "tools", "transport": "stdio", "command": "node"}


def _load(folder: Path) -> ConfigSet:
    return load_configs([folder])


def _errors(configs: ConfigSet, code: str) -> list[str]:
    return [p.render() for p in configs.errors if p.code == code]


def test_addresses_qualify_only_outside_the_default_namespace() -> None:
    assert ns.qualify("default", "cfo") == "cfo" and ns.qualify("acme", "cfo") == "acme.cfo"
    assert ns.split("acme.cfo") == ("acme", "cfo") and ns.split("cfo") == ("default", "cfo")
    assert ns.resolve("acme", "cfo") == "acme.cfo"          # a reference stays in its writer's namespace
    assert ns.resolve("acme", "default.cfo") == "cfo"       # unless it names another one
    assert ns.resolve("default", "acme.cfo") == "acme.cfo"


def test_the_same_id_in_two_namespaces_is_two_documents(tmp_path: Path) -> None:
    _write(tmp_path, "acme.json", _namespace("acme"))
    _write(tmp_path, "clerk.json", _agent("clerk"))
    _write(tmp_path / "acme", "clerk.json", _agent("clerk", "acme"))
    configs = _load(tmp_path)
    assert configs.ok, [p.render() for p in configs.problems]
    assert sorted(configs.agents) == ["acme.clerk", "clerk"]
    assert configs.agents["acme.clerk"].namespace == "acme"
    assert configs.source("agent", "acme.clerk").file.endswith("acme/clerk.json")
    # the default namespace's version hash is the one from before namespaces existed; another namespace's differs
    assert configs.source("agent", "clerk").version != configs.source("agent", "acme.clerk").version


def test_a_duplicate_id_within_one_namespace_is_an_error_at_its_position(tmp_path: Path) -> None:
    _write(tmp_path, "acme.json", _namespace("acme"))
    _write(tmp_path / "a", "clerk.json", _agent("clerk", "acme"))
    _write(tmp_path / "b", "clerk.json", _agent("clerk", "acme"))
    configs = _load(tmp_path)
    [problem] = _errors(configs, "duplicate-id")
    assert "b/clerk.json:" in problem and "$.id" in problem
    assert "duplicate agent id 'clerk' in namespace 'acme': already defined in" in problem
    assert list(configs.agents) == ["acme.clerk"]


def test_an_unknown_namespace_is_an_error_with_a_hint(tmp_path: Path) -> None:
    _write(tmp_path, "acme.json", _namespace("acme"))
    _write(tmp_path, "clerk.json", _agent("clerk", "acmee"))
    configs = _load(tmp_path)
    [problem] = _errors(configs, "unknown-namespace")
    assert "$.namespace" in problem and "unknown namespace 'acmee' (did you mean 'acme'?)" in problem
    assert configs.agents == {}


def test_adapters_and_endpoints_are_shared_so_they_stay_in_the_default_namespace(tmp_path: Path) -> None:
    _write(tmp_path, "acme.json", _namespace("acme"))
    _write(tmp_path, "lab.json", {"kind": "inference_endpoint", "id": "lab", "namespace": "acme", "type": "vllm",
                                  "url": "http://localhost:8000/v1", "base_model": "tiny"})
    configs = _load(tmp_path)
    [problem] = _errors(configs, "namespace-not-allowed")
    assert "shared by every namespace" in problem and configs.endpoints == {}


def test_a_cross_namespace_tool_grant_needs_a_route(tmp_path: Path) -> None:
    _write(tmp_path, "tools.json", SERVER)
    _write(tmp_path, "acme.json", _namespace("acme"))
    _write(tmp_path / "acme", "clerk.json", _agent("clerk", "acme", tools=[{"server": "default.tools", "tools": ["echo"]}]))
    _write(tmp_path / "acme", "own.json", _agent("own", "acme", tools=[{"server": "tools"}]))
    configs = _load(tmp_path)
    crossing = _errors(configs, "cross-namespace")
    assert len(crossing) == 1 and "clerk.json" in crossing[0] and "$.tools[0].server" in crossing[0]
    assert "namespace 'acme' has no route to tool 'tools.echo' of namespace 'default'" in crossing[0]
    # 'tools' written in acme means acme's own server, which does not exist
    [dangling] = _errors(configs, "dangling-reference")
    assert "own.json" in dangling and "unknown MCP server 'tools'" in dangling
    assert configs.agents == {}

    _write(tmp_path, "acme.json", _namespace("acme", routes=[{"to": "default", "tools": ["tools.*"]}]))
    assert "acme.clerk" in _load(tmp_path).agents


def test_policies_govern_their_own_namespace(tmp_path: Path) -> None:
    _write(tmp_path, "acme.json", _namespace("acme"))
    _write(tmp_path, "clerk.json", _agent("clerk"))
    _write(tmp_path / "acme", "clerk.json", _agent("clerk", "acme"))
    _write(tmp_path / "acme", "budget.json", {"kind": "policy", "id": "budget", "namespace": "acme",
                                              "applies_to": ["*"], "tokens_per_day": 10})
    configs = _load(tmp_path)
    policy = configs.policies["acme.budget"]
    assert policy.selects("acme.clerk") and not policy.selects("clerk")


def test_namespace_documents_are_checked(tmp_path: Path) -> None:
    _write(tmp_path, "acme.json", _namespace("acme", namespace="other", routes=[{"to": "nowhere"}]))
    configs = _load(tmp_path)
    rendered = "\n".join(p.render() for p in configs.errors)
    assert "grants nothing" in rendered and configs.namespaces == {}


def test_the_agents_quota_keeps_registered_agents_and_refuses_the_newest(tmp_path: Path) -> None:
    _write(tmp_path, "acme.json", _namespace("acme", quotas={"agents": 1}))
    for agent_id in ("alpha", "beta"):
        _write(tmp_path / "acme", f"{agent_id}.json", _agent(agent_id, "acme"))
    configs = _load(tmp_path)
    [warning] = [p.render() for p in configs.problems if p.code == "quota-agents"]
    assert "declares 2 agents but its quota is 1" in warning and "$.quotas.agents" in warning
    fresh = admit_agents(configs, [])
    assert fresh.admitted == {"acme.alpha"} and list(fresh.refused) == ["acme.beta"]
    kept = admit_agents(configs, ["acme.beta"])  # beta registered first: it keeps its place
    assert kept.admitted == {"acme.beta"} and "namespace 'acme' allows 1 agent" in kept.refused["acme.alpha"]


@pytest.mark.parametrize("granted, expected", [([], []), (["ana*"], ["acme.analyst"])])
def test_broadcasts_stay_in_their_namespace_unless_routed(tmp_path: Path, granted: list[str],
                                                          expected: list[str]) -> None:
    _write(tmp_path, "acme.json", _namespace("acme"))
    routes = [{"to": "acme", "agents": granted}] if granted else []
    _write(tmp_path, "default.json", _namespace("default", **({"routes": routes} if routes else {})))
    listens = {"subscriptions": [{"event_types": ["invoice.*"]}]}
    _write(tmp_path, "analyst.json", _agent("analyst", **listens))
    _write(tmp_path / "acme", "analyst.json", _agent("analyst", "acme", **listens))
    configs = _load(tmp_path)
    assert configs.ok, [p.render() for p in configs.problems]

    def woken(**fields: Any) -> list[str]:
        return route(Envelope(type="invoice.received", **fields), configs.agents,
                     namespaces=configs.namespaces).agents

    assert woken(source="erp") == sorted(["analyst", *expected])
    assert woken(source="erp", namespace="acme") == ["acme.analyst"]
    # an agent's broadcast is in its own namespace whatever it claims
    assert woken(source="acme.analyst", namespace="default") == []
