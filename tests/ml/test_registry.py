"""The local adapter registry: versions, latest/pinned resolution, and `aos adapters list` / `lora-modules`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kernel import settings
from kernel.cli import main
from kernel.ml.registry import (
    AdapterNotRegistered,
    LocalRegistry,
    RegistryError,
    VersionExists,
    VersionNotFound,
    version_key,
)
from tests.ml.support import write_configs


def trained_folder(path: Path, *, eval_loss: float = 1.5, sha: str = "0" * 64) -> Path:
    """What train_lora leaves behind (enough of it for the registry)."""
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text('{"peft_type": "LORA", "r": 4}')
    (path / "adapter_model.safetensors").write_bytes(b"weights")
    (path / "model_card.json").write_text(json.dumps({
        "base_model": "tiny", "metrics": {"eval_loss": eval_loss, "train_loss": 2.0, "steps": 3},
        "data": {"training": {"sha256": sha}}}))
    return path


def test_versions_sort_as_numbers_and_dates() -> None:
    ordered = ["1", "1.2", "1.10", "2", "10", "2026-01-05", "2026-11-01"]
    assert sorted(reversed(ordered), key=version_key) == ordered
    assert version_key("1.0-rc1") < version_key("1.0-rc2")


def test_register_and_resolve_latest_and_pinned(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    with pytest.raises(AdapterNotRegistered, match="aos adapters train fin --local"):
        registry.resolve("fin")
    for version, loss in (("2", 1.2), ("10", 0.9), ("9", 1.0)):
        registry.register("fin", version, trained_folder(tmp_path / f"out-{version}", eval_loss=loss))

    assert [v.version for v in registry.versions("fin")] == ["2", "9", "10"]
    latest = registry.resolve("fin", "latest")
    assert latest.version == "10" and latest.metrics["eval_loss"] == 0.9 and latest.base_model == "tiny"
    assert (Path(latest.path) / "adapter_model.safetensors").read_bytes() == b"weights"
    assert registry.resolve("fin", "9").version == "9"
    with pytest.raises(VersionNotFound) as missing:
        registry.resolve("fin", "3")
    assert "adapter 'fin' version '3' is not registered" in str(missing.value)
    assert "registered: 2, 9, 10" in str(missing.value)

    index = json.loads((tmp_path / "registry" / "index.json").read_text())
    assert list(index["adapters"]["fin"]) == ["2", "9", "10"]
    assert index["adapters"]["fin"]["2"]["data_sha256"] == "0" * 64
    assert sorted(p.name for p in (tmp_path / "registry" / "fin").iterdir()) == ["10", "2", "9"]  # no staging left


def test_an_existing_version_is_kept_unless_replaced(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    registry.register("fin", "1", trained_folder(tmp_path / "a", eval_loss=2.0))
    with pytest.raises(VersionExists, match="bump `version`"):
        registry.register("fin", "1", trained_folder(tmp_path / "b", eval_loss=1.0))
    assert registry.resolve("fin", "1").metrics["eval_loss"] == 2.0
    registry.register("fin", "1", tmp_path / "b", replace=True, move=True)
    assert registry.resolve("fin", "1").metrics["eval_loss"] == 1.0
    assert not (tmp_path / "b").exists()


def test_only_trained_adapter_folders_and_plain_versions(tmp_path: Path) -> None:
    registry = LocalRegistry(tmp_path / "registry")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RegistryError, match="no adapter_config.json"):
        registry.register("fin", "1", tmp_path / "empty")
    folder = trained_folder(tmp_path / "ok")
    for version in ("latest", "../x", ""):
        with pytest.raises(RegistryError, match="invalid version"):
            registry.register("fin", version, folder)
    with pytest.raises(RegistryError, match="invalid adapter name"):
        registry.register("Fin!", "1", folder)


def test_the_default_registry_is_under_the_state_folder(tmp_path: Path) -> None:
    assert settings.adapter_registry_dir({"AOS_STATE_DIR": str(tmp_path)}) == tmp_path / "adapters"
    assert settings.adapter_registry_dir({"AOS_ADAPTER_REGISTRY_DIR": str(tmp_path / "r")}) == tmp_path / "r"
    assert settings.adapter_registry_dir({"AOS_ADAPTER_REGISTRY_DIR": "reg"}) == settings.APP_ROOT / "reg"


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def test_list_shows_versions_metrics_and_which_agents_float_or_pin(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AOS_ADAPTER_REGISTRY_DIR", str(tmp_path / "registry"))
    write_configs(tmp_path, base_model="tiny", train="data/train.jsonl", agent_version="7")
    (tmp_path / "agent_configs" / "fin2.yaml").write_text(
        "id: fin2\ndisplay_name: Fin 2\npurpose: Invoices too.\nmodel:\n  adapter:\n    name: tiny-finance\n")

    code, output = _cli("adapters", "list", "--config", "agent_configs")
    assert code == 0, output
    assert "no version registered: aos adapters train tiny-finance --local" in output
    assert "agent fin: pins 7 -> NOT REGISTERED" in output and "agent fin2: floats (latest) -> NOT REGISTERED" in output

    registry = LocalRegistry(tmp_path / "registry")
    registry.register("tiny-finance", "7", trained_folder(tmp_path / "a", eval_loss=1.25))
    registry.register("tiny-finance", "8", trained_folder(tmp_path / "b", eval_loss=1.0))
    registry.register("retired", "1", trained_folder(tmp_path / "c"))
    code, output = _cli("adapters", "list", "--config", "agent_configs")
    assert code == 0, output
    assert "version 7: eval_loss 1.25, train_loss 2, steps 3" in output
    assert "agent fin: pins 7 -> 7" in output and "agent fin2: floats (latest) -> 8" in output
    assert "retired  registered, but no adapter config names it" in output

    code, output = _cli("adapters", "list", "--config", "agent_configs", "--format", "json")
    report = json.loads(output)
    [item] = report["adapters"]
    assert [v["version"] for v in item["versions"]] == ["7", "8"]
    assert item["agents"] == [
        {"agent": "fin", "version": "7", "pinned": True, "resolves_to": "7", "problem": None},
        {"agent": "fin2", "version": "latest", "pinned": False, "resolves_to": "8", "problem": None},
    ]
    assert report["unconfigured"] == ["retired"]

    code, output = _cli("adapters", "lora-modules", "--config", "agent_configs")
    assert code == 0
    assert f"--enable-lora --lora-modules tiny-finance={tmp_path / 'registry' / 'tiny-finance' / '8'}" in output
    assert "agents use versions 7, 8 of tiny-finance; serving 8" in output


def test_register_a_trained_folder_from_the_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write_configs(tmp_path, base_model="tiny", train="data/train.jsonl", version="4")
    folder = trained_folder(tmp_path / "trained")
    code, output = _cli("adapters", "register", "tiny-finance", str(folder), "--config", "agent_configs",
                        "--registry", "reg")
    assert code == 0, output
    assert "registered tiny-finance version 4" in output
    code, output = _cli("adapters", "register", "tiny-finance", str(folder), "--config", "agent_configs",
                        "--registry", "reg")
    assert code == 1 and "already registered" in output
    code, output = _cli("adapters", "register", "nope", str(folder), "--config", "agent_configs")
    assert code == 1 and "unknown adapter 'nope' (configured adapters: tiny-finance)" in output
