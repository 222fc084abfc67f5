"""Fixtures for config tests: a scratch repo layout with the sample MCP servers and adapters."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable

import pytest

from kernel.config import ConfigSet, load_configs

REPO = Path(__file__).resolve().parents[2]

WriteAndLoad = Callable[[dict[str, str]], ConfigSet]


@pytest.fixture
def load_with(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> WriteAndLoad:
    """Write files (relative path -> text) beside copies of the sample MCP and adapter configs,
    then load everything from the scratch folder; problems name paths relative to it."""
    shutil.copytree(REPO / "mcp_configs", tmp_path / "mcp_configs")
    (tmp_path / "agent_configs").mkdir()
    for adapter in (REPO / "agent_configs").glob("*.adapter.yaml"):
        shutil.copy(adapter, tmp_path / "agent_configs" / adapter.name)
    monkeypatch.chdir(tmp_path)

    def write_and_load(files: dict[str, str]) -> ConfigSet:
        for name, text in files.items():
            path = tmp_path / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
        return load_configs(["agent_configs", "mcp_configs"])

    return write_and_load
