"""Helpers for the offline infrastructure checks.

The topology files are generated from the configs by `aos topology`; regenerate both with

    .venv/bin/aos topology --bicep-params infra/topology.parameters.json --emulator-config emulator/Config.json

(or `.venv/bin/python tests/infra/infra_checks.py`, which does the same).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
MODULES = INFRA / "modules"
TOPOLOGY_PARAMETERS = INFRA / "topology.parameters.json"
EMULATOR_CONFIG = REPO / "emulator" / "Config.json"
REGENERATE = ("regenerate: .venv/bin/aos topology --bicep-params infra/topology.parameters.json "
              "--emulator-config emulator/Config.json")
APP_ROLES = ["kernel", "realm", "mcp"]


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


@cache
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
_INDEX_SCRIPT = """
import json, function_app
print(json.dumps({f.get_function_name(): [json.loads(b) for b in f.get_raw_bindings()]
                  for f in function_app.app.get_functions()}))
"""


@cache
def app_bindings(roles: str) -> dict[str, list[dict[str, Any]]]:
    """Each function's raw bindings when function_app.py is indexed with AOS_APP_ROLES=``roles``, as the
    Python worker indexes it in the Function App of that role (in a fresh process: roles are read at import)."""
    env = {**os.environ, "AOS_APP_ROLES": roles}
    result = subprocess.run([sys.executable, "-c", _INDEX_SCRIPT], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def current_topology() -> dict[str, Any]:
    """Exactly what `aos topology` prints in the repository root."""
    from kernel.config.loader import load_configs
    from kernel.topology import build_topology

    document, _ = build_topology(load_configs([REPO / "agent_configs", REPO / "mcp_configs", REPO / "workflow_configs"]))
    return document


def render(document: dict[str, Any]) -> str:
    """A generated JSON file's text, as `aos topology` writes it."""
    return json.dumps(document, indent=2) + "\n"


def main() -> None:
    from kernel.topology import bicep_parameters, emulator_config

    topology = current_topology()
    for path, document in ((TOPOLOGY_PARAMETERS, bicep_parameters(topology)), (EMULATOR_CONFIG, emulator_config(topology))):
        path.write_text(render(document))
        print(f"wrote {path.relative_to(REPO)}")


if __name__ == "__main__":
    main()
