"""checkov's Bicep policies over infra/, against a committed baseline of accepted findings.

checkov conflicts with the dev extra (it pins pycep-parser 0.5.1), so it lives in its own virtual
environment: infra/checkov/requirements.txt says how to make it. Without it the policy run is
skipped with that reason (CI installs it); the baseline's own checks always run.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest

from infra_checks import INFRA, REPO, parse

CHECKOV_DIR = INFRA / "checkov"
BASELINE = CHECKOV_DIR / "baseline.json"
REQUIREMENTS = CHECKOV_DIR / "requirements.txt"
DEFAULT_CHECKOV = REPO / ".venv" / "checkov" / "bin" / "checkov"
INSTALL = "python3 -m venv .venv/checkov && .venv/checkov/bin/pip install -r infra/checkov/requirements.txt"


def _baseline() -> dict:
    return json.loads(BASELINE.read_text())


def _key(check_id: str, file: str, resource: str) -> tuple[str, str, str]:
    return check_id, file.lstrip("/"), resource


def test_baseline_entries_name_real_resources_and_give_a_reason() -> None:
    baseline = _baseline()
    pinned = re.search(r"^checkov==([\d.]+)$", REQUIREMENTS.read_text(), re.MULTILINE)
    assert pinned and pinned.group(1) == baseline["checkov"], "requirements.txt and the baseline name different versions"
    keys = [_key(e["check_id"], e["file"], e["resource"]) for e in baseline["accepted"]]
    assert len(keys) == len(set(keys)), "duplicate baseline entries"
    for entry in baseline["accepted"]:
        assert re.fullmatch(r"CKV2?_AZURE_\d+", entry["check_id"]), entry
        path = INFRA / entry["file"]
        assert path.is_file(), entry
        type_, _, symbol = entry["resource"].rpartition(".")
        resource = parse(path).get("resources", {}).get(symbol)
        assert resource is not None and resource["type"] == type_, f"{entry['file']} declares no {entry['resource']}"
        assert len(entry["reason"]) >= 60, f"{entry['check_id']}: say why the finding is accepted"
    for entry in baseline["unparsed"]:
        assert (INFRA / entry["file"]).is_file() and len(entry["reason"]) >= 60, entry


def _checkov() -> Path | None:
    configured = os.environ.get("AOS_CHECKOV")
    candidate = Path(configured) if configured else DEFAULT_CHECKOV
    return candidate if candidate.is_file() else None


def test_checkov_finds_exactly_the_accepted_findings() -> None:
    checkov = _checkov()
    if checkov is None:
        pytest.skip(f"checkov is not installed (it needs its own environment): {INSTALL}")
    result = subprocess.run(
        [str(checkov), "--framework", "bicep", "--skip-download", "--directory", "infra", "--output", "json"],
        cwd=REPO, capture_output=True, text=True, timeout=300, check=False,
    )
    assert result.returncode in (0, 1), result.stderr[-2000:]
    report = json.loads(result.stdout)
    baseline = _baseline()
    assert report["summary"]["checkov_version"] == baseline["checkov"], f"install the pinned version: {INSTALL}"
    found = {_key(f["check_id"], f["file_path"], f["resource"]): f["check_name"] for f in report["results"]["failed_checks"]}
    accepted = {_key(e["check_id"], e["file"], e["resource"]) for e in baseline["accepted"]}
    new = [f"{c} {f} {r}: {found[(c, f, r)]}" for c, f, r in sorted(set(found) - accepted)]
    assert not new, "fix these, or accept them in infra/checkov/baseline.json with a reason:\n" + "\n".join(new)
    fixed = sorted(accepted - set(found))
    assert not fixed, f"no longer reported, remove them from infra/checkov/baseline.json: {fixed}"
    unparsed = {str(Path(p).resolve().relative_to(INFRA.resolve())) for p in report["results"].get("parsing_errors", [])}
    assert unparsed == {e["file"] for e in baseline["unparsed"]}, (
        f"checkov could not read {sorted(unparsed)}: its policies skip those files silently")
    assert report["summary"]["passed"] > 0
