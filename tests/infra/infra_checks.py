"""Helpers for the offline infrastructure checks, and the topology parameter file generator.

Regenerate infra/topology.parameters.json from the configs (what `aos topology` prints):

    .venv/bin/python tests/infra/infra_checks.py
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator


REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MODULES = INFRA / "modules"
TOPOLOGY_PARAMETERS = INFRA / "topology.parameters.json"
APP_ROLES = ["kernel", "realm", "mcp"]


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@lru_cache(maxsize=None)
def parse(path: Path) -> dict[str, Any]:
    from pycep import BicepParser

    return BicepParser().parse(file_path=path)


def tree(name: str) -> dict[str, Any]:
    """The parsed tree of ``infra/<name>`` (e.g. ``main.bicep``, ``modules/storage.bicep``)."""
    return parse(INFRA / name)


def body(resource: dict[str, Any]) -> dict[str, Any]:
    """A resource's or module's body, looking through ``for`` loops and ``if`` conditions."""
    config = resource["config"]
    while isinstance(config, dict) and ("loop_type" in config or "condition" in config) and "config" in config:
        config = config["config"]
    return config


def resources_of_type(parsed: dict[str, Any], type_: str, *, existing: bool = False) -> dict[str, dict[str, Any]]:
    return {
        name: r
        for name, r in parsed.get("resources", {}).items()
        if r["type"] == type_ and r["existing"] == existing
    }


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


def default(parsed: dict[str, Any], param: str) -> Any:
    return parsed["parameters"][param]["default"]


def topology_parameter() -> dict[str, Any]:
    return json.loads(TOPOLOGY_PARAMETERS.read_text())["parameters"]["topology"]["value"]
SCHEMA = "https://schema.management.azure.com/schemas/2019-04-01/deploymentParameters.json#"


def current_topology() -> dict[str, Any]:
    """Exactly what `aos topology` prints in the repository root."""
    from kernel.config.loader import load_configs
    from kernel.topology import build_topology

    document, _ = build_topology(load_configs([REPO / "agent_configs", REPO / "mcp_configs"]))
    return document


def render(topology: dict[str, Any]) -> str:
    document = {"$schema": SCHEMA, "contentVersion": "1.0.0.0", "parameters": {"topology": {"value": topology}}}
    return json.dumps(document, indent=2) + "\n"


def main() -> None:
    TOPOLOGY_PARAMETERS.write_text(render(current_topology()))
    print(f"wrote {TOPOLOGY_PARAMETERS.relative_to(REPO)}")


if __name__ == "__main__":
    main()
