"""The files the Functions host and our tooling read stay consistent with each other."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

from kernel import settings

REPO = Path(__file__).resolve().parents[1]


def _requirement_lines(text: str) -> list[str]:
    return [line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")]


def test_requirements_txt_matches_pyproject_dependencies() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = sorted(pyproject["project"]["dependencies"], key=str.lower)
    required = sorted(_requirement_lines((REPO / "requirements.txt").read_text()), key=str.lower)
    assert required == declared


def test_every_dependency_is_pinned() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    groups = [pyproject["project"]["dependencies"], *pyproject["project"]["optional-dependencies"].values()]
    for requirement in (r for group in groups for r in group):
        assert re.match(r"^[A-Za-z0-9_.\[\]-]+==[0-9][0-9A-Za-z.+-]*$", requirement), requirement


def test_host_json_is_a_complete_functions_host_config() -> None:
    host = json.loads((REPO / "host.json").read_text())
    assert host["version"] == "2.0"
    bundle = host["extensionBundle"]
    assert bundle["id"] == "Microsoft.Azure.Functions.ExtensionBundle"
    assert bundle["version"].startswith("[4.")
    assert host["extensions"]["durableTask"]["hubName"] == "%AOS_TASK_HUB%"
    assert "serviceBus" in host["extensions"]
    assert host["logging"]["logLevel"]["default"]


def test_local_settings_sample_names_every_setting_the_apps_read() -> None:
    sample = json.loads((REPO / "local.settings.sample.json").read_text())
    values = sample["Values"]
    assert values["FUNCTIONS_WORKER_RUNTIME"] == "python"
    assert values["AzureWebJobsStorage"] == "UseDevelopmentStorage=true"
    missing = [name for name in settings.SETTINGS if name not in values]
    assert not missing, f"local.settings.sample.json lacks {missing}"


def test_settings_are_read_only_through_the_settings_module() -> None:
    """A setting read straight from os.environ elsewhere would escape the sample's list."""
    offenders = []
    for package in ("kernel", "realm_of_agents", "mcp_servers"):
        for path in (REPO / package).rglob("*.py"):
            if path.name == "settings.py" or "engine" in path.parts:
                continue
            if re.search(r"os\.environ|os\.getenv", path.read_text()):
                offenders.append(str(path.relative_to(REPO)))
    assert not offenders


def test_package_json_pins_the_mcp_reference_servers() -> None:
    package = json.loads((REPO / "package.json").read_text())
    for name in ("server-filesystem", "server-memory", "server-everything"):
        version = package["dependencies"][f"@modelcontextprotocol/{name}"]
        assert re.match(r"^\d+\.\d+\.\d+$", version)
    assert (REPO / "package-lock.json").is_file()


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (REPO / ".ci" / "run").read_text()
    readme = (REPO / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
