"""From an adapter config to a training run: the same ``train_lora.py`` command line, run here
(``aos adapters train NAME --local``) or as an Azure ML command job (``aos adapters train NAME``).

The job (built with azure-ai-ml, imported only here and only when a job is built):

* **code**: this folder, of which ``.amlignore`` lets only ``train_lora.py`` into the snapshot;
* **command**: ``python train_lora.py --base-model ${{inputs.base_model}} --train-file
  ${{inputs.training_data}} ... --output-dir ${{outputs.adapter}}``, every hyperparameter a
  literal job input, so the Studio shows them and a rerun can change them;
* **inputs**: the training (and evaluation) data as ``uri_file``: an ``azureml://datastores/...``
  URI (or any URI) is used as it is; a local path is uploaded by the SDK when the job is
  submitted. The base model is a Hugging Face id (literal), or a ``uri_folder`` input when it is
  a local folder or an ``azureml:`` asset;
* **outputs**: ``adapter``, a ``uri_folder`` holding the adapter and its model card, which
  registration then points at (``azureml://jobs/<job>/outputs/adapter``);
* **environment**: ``AOS_AML_ENVIRONMENT`` if set (a registered environment), otherwise an
  anonymous one built from :data:`BASE_IMAGE` and a conda file pinning :data:`TRAINING_PACKAGES`
  (the ``ml`` extra's pins; a test keeps them equal);
* **compute**: the adapter's ``training.compute``, else ``AOS_AML_COMPUTE``, else serverless
  compute with the adapter's ``training.instance_type``.

``write_job_yaml`` writes the job as Azure ML CLI v2 YAML (``az ml job create -f``), which
``azure.ai.ml.load_job`` reads back. Nothing here talks to Azure until :func:`submit`.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel import settings
from kernel.config.models import VERSION_PATTERN, AdapterConfig

__all__ = [
    "BASE_IMAGE",
    "TRAINING_PACKAGES",
    "TrainPlan",
    "Workspace",
    "build_job",
    "check_local",
    "local_command",
    "plan",
    "submit",
    "write_job_yaml",
]

CODE_DIR = Path(__file__).resolve().parent
SCRIPT = CODE_DIR / "train_lora.py"
#: What the training job installs: the `ml` extra of pyproject.toml without azure-ai-ml.
TRAINING_PACKAGES = ("torch==2.13.0", "transformers==5.23.0", "peft==0.21.2", "accelerate==1.15.0")
#: Azure ML's CUDA base image; torch's CUDA wheels bring their own CUDA runtime, the image the driver and MPI.
BASE_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"
PYTHON_VERSION = "3.11"
EXPERIMENT = "aos-adapters"
OUTPUT = "adapter"


class JobError(Exception):
    """The adapter cannot be trained as asked; the message says what to change."""


@dataclass(frozen=True)
class Workspace:
    subscription_id: str
    resource_group: str
    name: str

    @classmethod
    def from_settings(cls, environ: Mapping[str, str] | None = None) -> "Workspace | None":
        """The workspace AOS_AML_* name, or None when none is configured (a partial one is an error)."""
        values = {name: settings.get(name, environ).strip()
                  for name in ("AOS_AML_SUBSCRIPTION_ID", "AOS_AML_RESOURCE_GROUP", "AOS_AML_WORKSPACE")}
        if not any(values.values()):
            return None
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise JobError(f"an Azure ML workspace needs {', '.join(missing)} as well")
        return cls(*values.values())

    def client(self, credential: Any = None) -> Any:
        """An ``MLClient`` for the workspace (``DefaultAzureCredential`` unless given one); no call is made yet."""
        from azure.ai.ml import MLClient

        if credential is None:
            from azure.identity import DefaultAzureCredential

            credential = DefaultAzureCredential()
        return MLClient(credential, self.subscription_id, self.resource_group, self.name)


def _is_remote(uri: str) -> bool:
    return uri.startswith(("azureml:", "https://", "http://", "wasbs://", "abfss://", "adl://"))


@dataclass(frozen=True)
class TrainPlan:
    """What one training run uses: the config's values with the command line's overrides applied.

    Local data and base model paths are absolute (relative ones are taken from ``root``, the
    folder the configs' repo-relative paths start at: the current directory for the CLI)."""

    name: str
    version: str
    base_model: str
    training_data: str
    evaluation_data: str | None
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    description: str | None = None

    def missing(self) -> list[str]:
        """Local data files (and a local base model folder) that do not exist."""
        return [f"{key} {path}" for key, path in self.local_paths().items() if not path.exists()]

    def local_paths(self) -> dict[str, Path]:
        """The inputs that are local paths (data files, a base model folder)."""
        found = {}
        for key in ("base_model", "training_data", "evaluation_data"):
            value = getattr(self, key)
            if value is not None and not _is_remote(value) and Path(value).is_absolute():
                found[key] = Path(value)
        return found


def plan(adapter: AdapterConfig, *, root: Path | None = None, version: str | None = None,
         base_model: str | None = None, overrides: Mapping[str, Any] | None = None) -> TrainPlan:
    """The run for ``adapter``; ``overrides`` replace training settings (``max_steps``, ``epochs``, ...)."""
    root = Path.cwd() if root is None else root
    if version is not None and (version == "latest" or not re.match(VERSION_PATTERN, version)):
        raise JobError(f"invalid version {version!r}: such as '1', '1.2.0' or '2026-11-01' (not 'latest')")

    def locate(uri: str) -> str:
        if _is_remote(uri):
            return uri
        path = Path(uri)
        return str(path if path.is_absolute() else (root / path).resolve())

    model = base_model or adapter.base_model
    if not _is_remote(model):
        candidate = Path(model) if Path(model).is_absolute() else root / model
        if candidate.is_dir() or model.startswith((".", "/")):  # a local folder, not a hub id such as org/name
            model = str(candidate.resolve())
    training = adapter.training.model_dump()
    unknown = set(overrides or {}) - set(training)
    if unknown:
        raise JobError(f"unknown training settings: {', '.join(sorted(unknown))}")
    training.update({k: v for k, v in (overrides or {}).items() if v is not None})
    hyperparameters = {
        "rank": adapter.rank, "alpha": adapter.alpha, "dropout": adapter.dropout,
        "target_modules": ",".join(adapter.target_modules),
        **{k: training[k] for k in ("learning_rate", "epochs", "max_steps", "batch_size",
                                    "gradient_accumulation_steps", "max_length", "eval_fraction", "seed")},
    }
    if adapter.evaluation_data is not None:
        hyperparameters["eval_fraction"] = None  # the evaluation file is the held-out data
    return TrainPlan(
        name=adapter.name, version=version or adapter.version, base_model=model,
        training_data=locate(adapter.training_data.uri),
        evaluation_data=locate(adapter.evaluation_data.uri) if adapter.evaluation_data else None,
        hyperparameters=hyperparameters, description=adapter.description)


#: (plan key, train_lora flag), in command-line order.
_FLAGS = (
    ("base_model", "--base-model"), ("training_data", "--train-file"), ("evaluation_data", "--eval-file"),
    ("eval_fraction", "--eval-fraction"), ("max_length", "--max-length"), ("rank", "--rank"), ("alpha", "--alpha"),
    ("dropout", "--dropout"), ("target_modules", "--target-modules"), ("learning_rate", "--learning-rate"),
    ("epochs", "--epochs"), ("max_steps", "--max-steps"), ("batch_size", "--batch-size"),
    ("gradient_accumulation_steps", "--gradient-accumulation-steps"), ("seed", "--seed"),
    ("adapter_name", "--adapter-name"), ("adapter_version", "--adapter-version"), ("output", "--output-dir"),
)


def _values(run: TrainPlan) -> dict[str, Any]:
    return {"base_model": run.base_model, "training_data": run.training_data, "evaluation_data": run.evaluation_data,
            **run.hyperparameters, "adapter_name": run.name, "adapter_version": run.version}


def script_arguments(values: Mapping[str, Any]) -> list[str]:
    """``train_lora`` arguments for the values that are set, in a fixed order."""
    arguments: list[str] = []
    for key, flag in _FLAGS:
        value = values.get(key)
        if value is not None:
            arguments += [flag, str(value)]
    return arguments


def check_local(run: TrainPlan) -> None:
    """:class:`JobError` unless ``run`` can train here: its data are local files that exist."""
    remote = [key for key in ("training_data", "evaluation_data") if _is_remote(getattr(run, key) or "")]
    if remote:
        raise JobError(
            f"adapter '{run.name}': {remote[0]} is not a local file ({getattr(run, remote[0])}); "
            "--local needs local files: download them, or train in Azure ML")
    if run.missing():
        raise JobError(f"adapter '{run.name}': {', '.join(run.missing())} does not exist")


def local_command(run: TrainPlan, output_dir: Path, *, cpu: bool = False) -> list[str]:
    """The command line that trains ``run`` on this machine: the job's command, with values for inputs."""
    check_local(run)
    command = [sys.executable, str(SCRIPT), *script_arguments({**_values(run), "output": str(output_dir)})]
    return command + (["--cpu"] if cpu else [])


def environment_spec() -> dict[str, Any]:
    """The conda file of the job's environment."""
    return {
        "name": "aos-lora-training",
        "channels": ["conda-forge"],
        "dependencies": [f"python={PYTHON_VERSION}", "pip", {"pip": list(TRAINING_PACKAGES)}],
    }


def build_job(run: TrainPlan, adapter: AdapterConfig, *, environ: Mapping[str, str] | None = None) -> Any:
    """The azure-ai-ml command job (``azure.ai.ml.command``) that trains ``run``."""
    from azure.ai.ml import Input, Output, command
    from azure.ai.ml.entities import Environment

    inputs: dict[str, Any] = {}
    values: dict[str, Any] = {}
    for key in ("training_data", "evaluation_data"):
        uri = getattr(run, key)
        if uri is not None:
            inputs[key] = Input(type="uri_file", path=uri)
            values[key] = f"${{{{inputs.{key}}}}}"
    if run.base_model.startswith("azureml:") and not run.base_model.startswith("azureml://"):
        inputs["base_model"] = Input(type="custom_model", path=run.base_model)  # a registered model: azureml:NAME:VERSION
    elif _is_remote(run.base_model) or Path(run.base_model).is_absolute():
        inputs["base_model"] = Input(type="uri_folder", path=run.base_model)
    else:
        inputs["base_model"] = run.base_model  # a Hugging Face model id, downloaded by the job
    values["base_model"] = "${{inputs.base_model}}"
    for key, value in run.hyperparameters.items():
        if value is not None:
            inputs[key] = value
            values[key] = f"${{{{inputs.{key}}}}}"
    values.update(adapter_name=run.name, adapter_version=run.version, output=f"${{{{outputs.{OUTPUT}}}}}")

    registered = settings.get("AOS_AML_ENVIRONMENT", environ).strip()
    environment: Any = registered or Environment(image=BASE_IMAGE, conda_file=environment_spec(),
                                                 description="AOS LoRA training (kernel/ml/jobs.py)")
    compute = adapter.training.compute or settings.get("AOS_AML_COMPUTE", environ).strip() or None
    return command(
        code=str(CODE_DIR),
        command="python train_lora.py " + " ".join(script_arguments(values)),
        inputs=inputs,
        outputs={OUTPUT: Output(type="uri_folder")},
        environment=environment,
        environment_variables={"HF_HUB_DISABLE_TELEMETRY": "1", "TOKENIZERS_PARALLELISM": "false"},
        compute=compute,
        instance_type=None if compute else adapter.training.instance_type,
        display_name=f"{run.name} {run.version}",
        description=run.description or f"LoRA adapter {run.name}",
        experiment_name=EXPERIMENT,
        tags={"aos.adapter": run.name, "aos.version": run.version, "aos.base_model": run.base_model},
    )


def write_job_yaml(job: Any, path: Path) -> Path:
    """The job as CLI v2 YAML that ``load_job`` (and ``az ml job create -f``) reads.

    ``CommandJob.dump`` writes local input paths as ``azureml:<path>`` (an asset reference, which
    is wrong until the SDK has uploaded them at submission), so local paths are written back as
    paths relative to the YAML file, as the CLI expects; so is the code folder.
    """
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    job._to_job().dump(str(path))
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    base = path.parent.resolve()

    def relative(value: str) -> str:
        return Path(_relpath(Path(value), base)).as_posix()

    if isinstance(document.get("code"), str) and Path(document["code"]).is_absolute():
        document["code"] = relative(document["code"])
    for spec in (document.get("inputs") or {}).values():
        if isinstance(spec, dict) and isinstance(spec.get("path"), str):
            local = spec["path"].removeprefix("azureml:")
            if Path(local).is_absolute() and not local.startswith("//"):
                spec["path"] = relative(local)
    header = ("# Azure ML command job written by `aos adapters train --dry-run` (kernel/ml/jobs.py).\n"
              "# Submit with: az ml job create -f " + path.name + "\n")
    path.write_text(header + yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=1000),
                    encoding="utf-8")
    return path


def _relpath(target: Path, base: Path) -> str:
    """``target`` relative to ``base`` when both are in the current directory's tree (a repo), else absolute."""
    import os

    root = Path.cwd().resolve()
    if not (target.is_relative_to(root) and base.is_relative_to(root)):
        return str(target)
    return os.path.relpath(target, base)


def submit(job: Any, client: Any) -> Any:
    """Submit the job through ``client`` (an ``MLClient``); returns the created job (``.name``, ``.studio_url``)."""
    return client.jobs.create_or_update(job)
