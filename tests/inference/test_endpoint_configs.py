"""Inference endpoint documents: the model, the loader's cross-checks, the samples and their schema."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from kernel.config import load_configs
from kernel.config.schemas import load

REPO = Path(__file__).resolve().parents[2]
ENDPOINT_SAMPLES = sorted((REPO / "agent_configs" / "endpoints").glob("*.yaml"))
LITERAL_KEY = "sk-live-4f9d8e7c6b5a"

ENDPOINT = """kind: inference_endpoint
id: lab
type: vllm
url: http://localhost:8000/v1
base_model: tiny-base
adapters:
  served: [finance-lora]
"""
ADAPTER = """kind: adapter
name: {name}
version: "1"
base_model: {base}
training_data: {{uri: data/x.jsonl}}
"""
AGENT = """id: analyst
display_name: Analyst
purpose: Analyse invoices.
model:
  endpoint: {endpoint}
  adapter: {{name: {adapter}}}
"""


def _load(tmp_path: Path, files: dict[str, str]):
    folder = tmp_path / "agent_configs"
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load_configs([folder])


def _adapters(*names: str, base: str = "tiny-base") -> dict[str, str]:
    return {f"{n}.adapter.yaml": ADAPTER.format(name=n, base=base) for n in names}


def test_an_agent_names_a_declared_endpoint(tmp_path: Path) -> None:
    configs = _load(tmp_path, {"endpoints/lab.yaml": ENDPOINT, **_adapters("finance-lora"),
                               "analyst.yaml": AGENT.format(endpoint="lab", adapter="finance-lora")})
    assert configs.problems == []
    assert configs.agents["analyst"].model.endpoint == "lab"
    lab = configs.endpoints["lab"]
    assert lab.adapters.served == ["finance-lora"] and lab.retries.max_attempts == 3 and lab.concurrency == 8
    assert configs.source("inference_endpoint", "lab").file.endswith("endpoints/lab.yaml")


def test_an_unknown_endpoint_is_a_dangling_reference_with_a_hint(tmp_path: Path) -> None:
    configs = _load(tmp_path, {"endpoints/lab.yaml": ENDPOINT, **_adapters("finance-lora"),
                               "analyst.yaml": AGENT.format(endpoint="labs", adapter="finance-lora")})
    (problem,) = configs.errors
    assert problem.path == "$.model.endpoint" and problem.code == "dangling-reference"
    assert "unknown inference endpoint 'labs' (did you mean 'lab'?)" in problem.message
    assert "analyst" not in configs.agents


def test_warnings_when_an_enabled_endpoint_will_not_serve_the_agents_adapter(tmp_path: Path) -> None:
    configs = _load(tmp_path, {"endpoints/lab.yaml": ENDPOINT, **_adapters("exec-voice", base="other-base"),
                               "analyst.yaml": AGENT.format(endpoint="lab", adapter="exec-voice")})
    assert configs.errors == [] and "analyst" in configs.agents
    codes = {p.code: p.message for p in configs.problems}
    assert "its calls use base model 'tiny-base'" in codes["adapter-not-served"]
    assert "extends 'other-base'" in codes["adapter-base-model"]

    disabled = _load(tmp_path / "again", {"endpoints/lab.yaml": ENDPOINT + "enabled: false\n",
                                          **_adapters("exec-voice", base="other-base"),
                                          "analyst.yaml": AGENT.format(endpoint="lab", adapter="exec-voice")})
    assert disabled.problems == [], "a disabled endpoint serves nothing, so it is not checked"


def test_a_literal_key_is_refused_without_being_echoed(tmp_path: Path) -> None:
    text = ENDPOINT + f"auth:\n  type: key\n  key: {LITERAL_KEY}\n"
    configs = _load(tmp_path, {"endpoints/lab.yaml": text})
    (problem,) = configs.errors
    assert "exactly one reference" in problem.message and LITERAL_KEY not in json.dumps(problem.to_dict())


@pytest.mark.parametrize(("extra", "expected"), [
    ("description: ${secret:x}\n", "references are resolved in inference endpoint documents only in: auth, url"),
    ("auth: {type: entra}\n", "needs 'auth.scope'"),
    ("auth: {type: none, key: '${secret:k}'}\n", "does not use 'key'"),
    ("headers: {api-key: x}\n", "carries credentials"),
    ("concurrency: 0\n", "greater than or equal to 1"),
    ("kind: inference_endpoints\n", "did you mean 'inference_endpoint'"),
])
def test_broken_endpoint_documents_are_reported(tmp_path: Path, extra: str, expected: str) -> None:
    text = ENDPOINT.replace("kind: inference_endpoint\n", "") if extra.startswith("kind") else ENDPOINT
    configs = _load(tmp_path, {"endpoints/lab.yaml": text + extra})
    assert configs.endpoints == {}
    assert any(expected in p.message or expected in (p.expected or "") for p in configs.errors), \
        [p.render() for p in configs.errors]


def test_the_sample_agents_name_real_endpoint_and_adapter_configs() -> None:
    configs = load_configs([REPO / "agent_configs", REPO / "mcp_configs"])
    assert configs.problems == []
    assert set(configs.endpoints) == {"local-lora", "azureml-lora", "azure-openai", "foundry", "ollama"}
    for agent_id in ("ceo", "cfo", "operations"):
        model = configs.agents[agent_id].model
        endpoint = configs.endpoints[model.endpoint]
        assert model.adapter.name in configs.adapters and model.adapter.name in endpoint.adapters.served
        assert configs.adapters[model.adapter.name].base_model == endpoint.base_model
    assert configs.agents["cto"].model.endpoint is None, "the CTO uses the app settings' default endpoint"
    assert not any(e.enabled for e in configs.endpoints.values()), "make run stays offline on a machine with no model"


@pytest.mark.parametrize("path", ENDPOINT_SAMPLES, ids=lambda p: p.name)
def test_every_endpoint_sample_declares_its_schema_and_validates_against_it(path: Path) -> None:
    raw = yaml.safe_load(path.read_text())
    assert raw["$schema"] == "../../schemas/inference-endpoint.schema.json"
    jsonschema.Draft202012Validator(load(REPO / "schemas", "inference-endpoint")).validate(raw)
