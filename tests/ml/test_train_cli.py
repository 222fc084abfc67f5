"""`aos adapters train NAME --local` end to end: the adapter config's training run on a tiny local
base model, registered in the local registry, then listed with its metrics and served."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernel.cli import main
from kernel.ml.registry import LocalRegistry
from tests.ml.support import conversations, requires_torch, write_configs, write_jsonl

@requires_torch
def test_train_locally_registers_a_version_that_agents_float_to(tiny_base: Path, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AOS_ADAPTER_REGISTRY_DIR", str(tmp_path / "registry"))
    train = write_jsonl(tmp_path / "data" / "train.jsonl", conversations(12))
    write_jsonl(tmp_path / "data" / "eval.jsonl", conversations(3, offset=30))
    write_configs(tmp_path, base_model=str(tiny_base), train="data/train.jsonl", evaluation="data/eval.jsonl",
                  version="3", extra="training:\n  learning_rate: 0.005\n  batch_size: 4\n  max_steps: 400\n")

    result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--local", "--steps", "6",
                                       "--config", "agent_configs"])
    assert result.exit_code == 0, result.output
    assert f"training tiny-finance version 3 on {tiny_base}" in result.output
    registered = tmp_path / "registry" / "tiny-finance" / "3"
    assert f"registered tiny-finance version 3 at {registered}: eval_loss " in result.output

    entry = LocalRegistry(tmp_path / "registry").resolve("tiny-finance", "latest")
    assert entry.version == "3" and entry.base_model == str(tiny_base)
    assert entry.metrics["steps"] == 6  # --steps beat the config's max_steps
    card = json.loads((registered / "model_card.json").read_text())
    assert card["adapter"] == {"name": "tiny-finance", "version": "3"}
    assert card["hyperparameters"]["learning_rate"] == 0.005 and card["hyperparameters"]["rank"] == 4
    assert card["data"]["training"]["path"] == str(train)
    assert entry.data_sha256 == card["data"]["training"]["sha256"]
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= {p.name for p in registered.iterdir()}
    assert not any((tmp_path / "registry" / ".staging").iterdir())  # the run's output was moved in

    listed = CliRunner().invoke(main, ["adapters", "list", "--config", "agent_configs"])
    assert "version 3: eval_loss" in listed.output and "agent fin: floats (latest) -> 3" in listed.output
    served = CliRunner().invoke(main, ["adapters", "lora-modules", "--config", "agent_configs"])
    assert served.output.strip() == f"--enable-lora --lora-modules tiny-finance={registered}"

    again = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--local", "--config", "agent_configs"])
    assert again.exit_code == 1 and "version '3' is already registered" in again.output


@requires_torch
def test_a_failing_run_registers_nothing(tiny_base: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "data" / "train.jsonl", conversations(4))
    write_configs(tmp_path, base_model=str(tiny_base), train="data/train.jsonl", extra="training:\n  max_length: 16\n")
    result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--local", "--config", "agent_configs",
                                       "--registry", "registry"])
    assert result.exit_code == 1
    assert "no example has assistant tokens within --max-length 16" in result.output
    assert "training failed (train_lora exited 2); nothing registered" in result.output
    assert LocalRegistry(tmp_path / "registry").versions("tiny-finance") == []
    assert not any((tmp_path / "registry" / ".staging").iterdir())


def test_bad_data_fails_before_anything_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text("not json\n")
    write_configs(tmp_path, base_model="tiny", train="data/train.jsonl")
    for extra in (["--local"], ["--dry-run", "job.yaml"]):
        result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--config", "agent_configs",
                                           "--registry", "registry", *extra])
        assert result.exit_code == 1
        assert "adapter 'tiny-finance': training_data: " in result.output and "train.jsonl:1: not JSON" in result.output
    assert not (tmp_path / "registry").exists() and not (tmp_path / "job.yaml").exists()


def test_local_training_needs_local_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_configs(tmp_path, base_model="tiny", train="azureml://datastores/d/paths/train.jsonl")
    result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--local", "--config", "agent_configs",
                                       "--registry", "registry"])
    assert result.exit_code == 1 and "--local needs local files" in result.output


def test_a_version_must_be_a_plain_version(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "data" / "train.jsonl", conversations(2))
    write_configs(tmp_path, base_model="tiny", train="data/train.jsonl")
    result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--local", "--version", "latest",
                                       "--config", "agent_configs", "--registry", "registry"])
    assert result.exit_code == 1 and "invalid version 'latest'" in result.output
