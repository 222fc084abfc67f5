"""Shared helpers for the engine suite: app paths and a host factory."""

from __future__ import annotations

from pathlib import Path

import pytest

APPS = Path(__file__).parent / "apps"


def app_path(name: str) -> str:
    return str(APPS / f"{name}.py")


@pytest.fixture
def apps_dir() -> Path:
    return APPS
