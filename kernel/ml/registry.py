"""Trained adapters by name and version: a local registry folder, or the Azure ML model registry.

Local layout (``AOS_ADAPTER_REGISTRY_DIR``, default ``AOS_STATE_DIR/adapters``)::

    <root>/index.json                  {"adapters": {name: {version: entry}}}: what is registered
    <root>/<name>/<version>/           adapter_config.json, adapter_model.safetensors, model_card.json, README.md

An entry records when and from where the version was registered, its base model, the SHA-256 of
its training data and its metrics (from the model card ``train_lora`` writes). The index is the
source of truth: a folder that is not in it is not a version (a half-copied one never is, since
the folder is renamed into place before the index names it). The index is replaced atomically.

Versions are compared as version numbers: ``latest`` is the highest, with ``1 < 2 < 10``,
``1.2 < 1.10`` and dates (``2026-11-01``) in date order; a part that is not a number compares as
text after numbers. A pinned version must be registered: :class:`VersionNotFound` says which
versions there are.

In Azure the registry is the workspace's model registry: :class:`AzureModelRegistry` registers a
training job's ``adapter`` output as a ``custom_model`` named after the adapter, with the same
version and the model card's metrics as tags (azure-ai-ml is imported only there).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from kernel.config.models import ID_PATTERN, VERSION_PATTERN

__all__ = [
    "AdapterNotRegistered",
    "AzureModelRegistry",
    "LATEST",
    "LocalRegistry",
    "RegisteredVersion",
    "RegistryError",
    "VersionExists",
    "VersionNotFound",
    "version_key",
]

LATEST = "latest"
INDEX_FILE = "index.json"
CARD_FILE = "model_card.json"
ADAPTER_FILE = "adapter_config.json"


class RegistryError(Exception):
    """A registry operation that cannot be done; the message says why and what to do."""


class AdapterNotRegistered(RegistryError):
    pass


class VersionNotFound(RegistryError):
    pass


class VersionExists(RegistryError):
    pass


def version_key(version: str) -> tuple[tuple[int, int | str], ...]:
    """Sort key of a version: numeric parts as numbers, others as text after them."""
    return tuple((0, int(part)) if part.isdigit() else (1, part) for part in re.split(r"[._-]", version))


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    path: str
    registered: str
    base_model: str | None = None
    data_sha256: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    source: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "path": self.path, "registered": self.registered,
                "base_model": self.base_model, "data_sha256": self.data_sha256, "metrics": dict(self.metrics),
                "source": dict(self.source)}


def _check(name: str, version: str) -> None:
    if not re.match(ID_PATTERN, name):
        raise RegistryError(f"invalid adapter name {name!r}: lowercase letters, digits and hyphens")
    if version == LATEST or not re.match(VERSION_PATTERN, version):
        raise RegistryError(f"invalid version {version!r}: such as '1', '1.2.0' or '2026-11-01' (not 'latest')")


def read_card(directory: Path) -> dict[str, Any]:
    """The model card ``train_lora`` wrote in ``directory``, or ``{}``."""
    path = directory / CARD_FILE
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return card if isinstance(card, dict) else {}


class LocalRegistry:
    """Adapters in a folder (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading ----------------------------------------------------------------------------------

    def _index(self) -> dict[str, dict[str, dict[str, Any]]]:
        path = self.root / INDEX_FILE
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise RegistryError(f"{path} is not valid JSON ({error}); fix or remove it") from None
        return data.get("adapters", {}) if isinstance(data, dict) else {}

    def names(self) -> list[str]:
        return sorted(name for name, versions in self._index().items() if versions)

    def versions(self, name: str) -> list[RegisteredVersion]:
        """Registered versions of ``name``, lowest first (``[]`` if none)."""
        entries = self._index().get(name, {})
        return [self._entry(name, version, entries[version]) for version in sorted(entries, key=version_key)]

    def _entry(self, name: str, version: str, entry: dict[str, Any]) -> RegisteredVersion:
        return RegisteredVersion(
            name=name, version=version, path=str(self.root / name / version), registered=str(entry.get("registered")),
            base_model=entry.get("base_model"), data_sha256=entry.get("data_sha256"),
            metrics=dict(entry.get("metrics") or {}), source=dict(entry.get("source") or {}))

    def resolve(self, name: str, version: str = LATEST) -> RegisteredVersion:
        """The registered version ``version`` names: the highest for ``latest``, else exactly that one."""
        known = self.versions(name)
        if not known:
            raise AdapterNotRegistered(
                f"adapter '{name}' has no registered version in {self.root}: train one with "
                f"`aos adapters train {name} --local` (or register a trained folder with `aos adapters register`)")
        if version == LATEST:
            return known[-1]
        for entry in known:
            if entry.version == version:
                return entry
        raise VersionNotFound(
            f"adapter '{name}' version '{version}' is not registered in {self.root}; registered: "
            f"{', '.join(e.version for e in known)}. Pin one of those, use 'latest', or train version '{version}'")

    def exists(self, name: str, version: str) -> bool:
        return version in self._index().get(name, {})

    # -- writing ----------------------------------------------------------------------------------

    def register(self, name: str, version: str, source_dir: Path, *, replace: bool = False, move: bool = False,
                 source: dict[str, Any] | None = None) -> RegisteredVersion:
        """Copy (or ``move``) a trained adapter folder in as ``name`` ``version`` and record it.

        The folder must hold ``adapter_config.json``; its ``model_card.json`` supplies base model,
        data hash and metrics. An existing version is :class:`VersionExists` unless ``replace``.
        """
        _check(name, version)
        source_dir = Path(source_dir)
        if not (source_dir / ADAPTER_FILE).is_file():
            raise RegistryError(f"{source_dir} holds no {ADAPTER_FILE}: not a trained PEFT adapter folder")
        if self.exists(name, version) and not replace:
            raise VersionExists(
                f"adapter '{name}' version '{version}' is already registered in {self.root}: bump `version` in the "
                "adapter's config (or pass --version), or pass --replace to overwrite it")
        card = read_card(source_dir)
        target = self.root / name / version
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{version}-", dir=target.parent))
        try:
            staged = staging / "adapter"
            if move:
                shutil.move(str(source_dir), staged)
            else:
                shutil.copytree(source_dir, staged)
            if target.exists():
                shutil.rmtree(target)
            staged.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        training = (card.get("data") or {}).get("training") or {}
        entry = {
            "registered": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "base_model": card.get("base_model"),
            "data_sha256": training.get("sha256"),
            "metrics": card.get("metrics") or {},
            "source": source or {"kind": "folder", "path": str(source_dir)},
        }
        index = self._index()
        index.setdefault(name, {})[version] = entry
        self._write_index(index)
        return self._entry(name, version, entry)

    def _write_index(self, index: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        ordered = {name: {v: index[name][v] for v in sorted(index[name], key=version_key)} for name in sorted(index)}
        handle, temp = tempfile.mkstemp(prefix=".index-", dir=self.root)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump({"adapters": ordered}, out, indent=2, ensure_ascii=False)
            out.write("\n")
        os.replace(temp, self.root / INDEX_FILE)


# ------------------------------------------------------------------------------------------------
# Azure ML model registry
# ------------------------------------------------------------------------------------------------


def job_output_uri(job_name: str, output: str = "adapter") -> str:
    return f"azureml://jobs/{job_name}/outputs/{output}"


def azure_model(name: str, version: str, *, path: str, card: dict[str, Any] | None = None,
                description: str | None = None) -> Any:
    """The azure-ai-ml ``Model`` that registers a trained adapter folder (a job output or a local folder)."""
    from azure.ai.ml.constants import AssetTypes
    from azure.ai.ml.entities import Model

    _check(name, version)
    card = card or {}
    tags = {"aos.kind": "lora-adapter", "aos.adapter": name}
    if card.get("base_model"):
        tags["aos.base_model"] = str(card["base_model"])
    sha = ((card.get("data") or {}).get("training") or {}).get("sha256")
    if sha:
        tags["aos.data_sha256"] = sha
    for key, value in (card.get("metrics") or {}).items():
        if value is not None:
            tags[f"aos.metric.{key}"] = str(value)
    return Model(name=name, version=version, path=path, type=AssetTypes.CUSTOM_MODEL,
                 description=description or f"LoRA adapter '{name}' (AOS)", tags=tags)


class AzureModelRegistry:
    """Adapters as models in an Azure ML workspace, through an ``MLClient`` (or anything shaped like one)."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def register(self, name: str, version: str, *, path: str, card: dict[str, Any] | None = None,
                 description: str | None = None) -> Any:
        return self.client.models.create_or_update(azure_model(name, version, path=path, card=card,
                                                               description=description))

    def register_job_output(self, name: str, version: str, job_name: str, *, card: dict[str, Any] | None = None,
                            description: str | None = None) -> Any:
        return self.register(name, version, path=job_output_uri(job_name), card=card, description=description)

    def versions(self, name: str) -> list[dict[str, Any]]:
        """Registered versions of ``name``, lowest first, with the metrics recorded in their tags."""
        found = []
        for model in self.client.models.list(name=name):
            tags = dict(getattr(model, "tags", None) or {})
            metrics = {k.removeprefix("aos.metric."): v for k, v in tags.items() if k.startswith("aos.metric.")}
            found.append({"name": name, "version": str(model.version), "path": getattr(model, "path", None),
                          "base_model": tags.get("aos.base_model"), "metrics": metrics})
        return sorted(found, key=lambda item: version_key(item["version"]))
