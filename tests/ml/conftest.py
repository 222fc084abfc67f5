"""Fixtures for the LoRA tests: offline Hugging Face, a tiny local base model, scratch configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.ml.support import HAS_TORCH


@pytest.fixture(autouse=True)
def _offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No Hugging Face download anywhere, and no shared cache."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_HUB_DISABLE_TELEMETRY", "1")


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random Llama with a locally trained tokenizer (no chat template): built once per session."""
    if not HAS_TORCH:
        pytest.skip("needs the ml extra (torch, transformers, peft)")
    from tests.ml.support import build_base_model

    return build_base_model(tmp_path_factory.mktemp("tiny-llama"))
