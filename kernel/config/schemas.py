"""JSON Schemas exported from the pydantic models, committed in ``schemas/``.

Editors autocomplete configs through the ``$schema`` line of each sample; ``aos schema --check``
and a test fail when the committed files no longer match the models.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from kernel.config.models import (
    AdapterConfig,
    AgentConfig,
    InferenceEndpointConfig,
    McpServerConfig,
    NamespaceConfig,
    PolicyConfig,
)
from kernel.messages import Envelope
from kernel.workflows.models import WorkflowConfig

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"

#: File stem in ``schemas/`` -> model.
SCHEMA_MODELS: dict[str, type[BaseModel]] = {
    "agent": AgentConfig,
    "adapter": AdapterConfig,
    "mcp-server": McpServerConfig,
    "inference-endpoint": InferenceEndpointConfig,
    "policy": PolicyConfig,
    "namespace": NamespaceConfig,
    "workflow": WorkflowConfig,
    "envelope": Envelope,
}


def file_name(stem: str) -> str:
    return f"{stem}.schema.json"


def render(stem: str) -> str:
    """The schema file text for one model, stable byte for byte."""
    schema = SCHEMA_MODELS[stem].model_json_schema(by_alias=True)
    document = {"$schema": SCHEMA_DIALECT, "$id": file_name(stem), **schema}
    return json.dumps(document, indent=2, sort_keys=False, ensure_ascii=False) + "\n"


def write(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for stem in SCHEMA_MODELS:
        path = directory / file_name(stem)
        path.write_text(render(stem), encoding="utf-8")
        written.append(path)
    return written


def drifted(directory: Path) -> list[str]:
    """Schema files that are missing or differ from the models."""
    stale = []
    for stem in SCHEMA_MODELS:
        path = directory / file_name(stem)
        if not path.is_file() or path.read_text(encoding="utf-8") != render(stem):
            stale.append(str(path))
    return stale


def load(directory: Path, stem: str) -> dict:
    return json.loads((directory / file_name(stem)).read_text(encoding="utf-8"))
