"""The sample configs are valid, point at their schemas, and the schemas are the contract."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from kernel.config import load_configs
from kernel.config.schemas import SCHEMA_MODELS, drifted, file_name, load, render

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
SAMPLES = sorted(
    p for folder in ("agent_configs", "mcp_configs") for p in (REPO / folder).iterdir() if p.suffix in {".json", ".yaml", ".yml"}
)
KIND_SCHEMA = {"agent": "agent", "adapter": "adapter", "mcp_server": "mcp-server"}


def _raw(path: Path) -> dict:
    text = path.read_text()
    return json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)


def _kind(path: Path, raw: dict) -> str:
    return raw.get("kind") or ("agent" if path.parent.name == "agent_configs" else "mcp_server")


def test_committed_schemas_match_the_models() -> None:
    assert drifted(SCHEMAS) == [], "run `aos schema` and commit schemas/"


def test_drift_is_detected(tmp_path: Path) -> None:
    for stem in SCHEMA_MODELS:
        (tmp_path / file_name(stem)).write_text(render(stem))
    assert drifted(tmp_path) == []
    stale = tmp_path / file_name("agent")
    stale.write_text(stale.read_text().replace('"purpose"', '"porpoise"'))
    assert drifted(tmp_path) == [str(stale)]


def test_samples_load_without_problems() -> None:
    configs = load_configs([REPO / "agent_configs", REPO / "mcp_configs"])
    assert [p.render() for p in configs.problems] == []
    assert {"ceo", "cfo", "cto", "operations"} <= set(configs.agents)
    assert len(configs.adapters) >= 2
    assert {"filesystem", "memory", "everything", "github"} <= set(configs.mcp_servers)
    github = configs.mcp_servers["github"]
    assert not github.enabled and "${secret:" in github.headers["Authorization"]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
def test_every_sample_declares_its_schema_and_validates_against_it(path: Path) -> None:
    raw = _raw(path)
    stem = KIND_SCHEMA[_kind(path, raw)]
    assert raw["$schema"] == f"../schemas/{file_name(stem)}"
    jsonschema.Draft202012Validator(load(SCHEMAS, stem)).validate(raw)


@pytest.mark.parametrize(
    "raw",
    [
        {"id": "x", "display_name": "X"},  # missing purpose
        {"id": "x", "display_name": "X", "purpose": "p", "colour": "red"},  # unknown key
        {"id": "X!", "display_name": "X", "purpose": "p"},  # bad id
        {"id": "x", "display_name": "X", "purpose": "p", "memory": {"max_state_bytes": 1}},
        {"id": "x", "display_name": "X", "purpose": "p", "tools": [{"server": "fs", "tools": "read"}]},
    ],
)
def test_schema_and_models_reject_the_same_broken_agents(raw: dict) -> None:
    from pydantic import ValidationError

    from kernel.config.models import AgentConfig

    with pytest.raises(ValidationError):
        AgentConfig.model_validate(raw)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(load(SCHEMAS, "agent")).validate(raw)


def test_envelope_schema_is_published() -> None:
    schema = load(SCHEMAS, "envelope")
    assert set(schema["required"]) == {"type", "source"}
    for field in ("id", "type", "source", "subject", "to", "correlation_id", "causation_id", "reply_to", "traceparent", "time", "data"):
        assert field in schema["properties"]
