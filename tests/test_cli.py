"""`aos validate`, `aos schema` and `aos topology` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from kernel.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_validate_passes_on_the_samples(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["validate", "agent_configs", "mcp_configs", "workflow_configs"])
    assert result.exit_code == 0, result.output
    assert ("1 namespace, 5 inference endpoints, 6 agents, 3 adapters, 4 MCP servers, 2 policies, "
            "1 workflow valid; no problems") in result.output


def test_validate_reports_and_fails_on_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "agent_configs"
    broken.mkdir()
    (broken / "x.yaml").write_text("id: x\ndisplay_name: X\npurpose: p\nsubscriptons: []\n")
    result = CliRunner().invoke(main, ["validate", str(broken)])
    assert result.exit_code == 1
    assert f"{broken / 'x.yaml'}:4:1: error: $.subscriptons: unknown key 'subscriptons'" in result.output


def test_validate_json_format_is_machine_readable(tmp_path: Path) -> None:
    (tmp_path / "agent_configs").mkdir()
    (tmp_path / "agent_configs" / "x.json").write_text('{"id": "x"}')
    result = CliRunner().invoke(main, ["validate", "--format", "json", str(tmp_path / "agent_configs")])
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["ok"] is False
    missing = {p["path"] for p in report["problems"] if p["code"] == "missing"}
    assert missing == {"$.display_name", "$.purpose"}
    assert all(p["line"] == 1 for p in report["problems"])


def test_validate_names_paths_that_do_not_exist(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["validate", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "no such file or folder" in result.output


def test_schema_check_fails_on_drift_and_writing_fixes_it(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["schema", "--check", "--out", str(tmp_path)]).exit_code == 1
    assert runner.invoke(main, ["schema", "--out", str(tmp_path)]).exit_code == 0
    result = runner.invoke(main, ["schema", "--check", "--out", str(tmp_path)])
    assert result.exit_code == 0 and "match the models" in result.output


def test_committed_schemas_pass_the_check(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    assert CliRunner().invoke(main, ["schema", "--check"]).exit_code == 0


def test_topology_prints_json(monkeypatch) -> None:
    monkeypatch.chdir(REPO)
    result = CliRunner().invoke(main, ["topology"])
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert {t["name"] for t in document["topics"]} >= {"agent-events", "mcp-requests"}


def test_the_aos_console_script_is_installed() -> None:
    aos = Path(sys.executable).parent / "aos"
    result = subprocess.run([str(aos), "validate"], cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ})
    assert result.returncode == 0, result.stdout + result.stderr
