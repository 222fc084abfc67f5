"""The Azure ML training job: built with azure-ai-ml from an adapter config, written as YAML that
`load_job` reads back, submitted (and registered) only when a workspace is configured. No network."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from kernel.cli import main
from kernel.config import load_configs
from kernel.ml import jobs
from kernel.ml.registry import AzureModelRegistry, azure_model, job_output_uri
from kernel.settings import APP_ROOT
from tests.ml.support import conversations, requires_azure_ml, write_configs, write_jsonl

# azure-ai-ml's marshmallow schemas warn about marshmallow 4 on every import and load: not ours to fix.
pytestmark = [requires_azure_ml, pytest.mark.filterwarnings("ignore::DeprecationWarning:marshmallow.*"),
              pytest.mark.filterwarnings("ignore::DeprecationWarning:azure.ai.ml.*")]

WORKSPACE = {"AOS_AML_SUBSCRIPTION_ID": "00000000-0000-0000-0000-000000000000",
             "AOS_AML_RESOURCE_GROUP": "rg-aos", "AOS_AML_WORKSPACE": "mlw-aos"}


@pytest.fixture
def scratch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A repo-like folder as the current directory: data/, agent_configs/ (adapter tiny-finance, agent fin)."""
    monkeypatch.chdir(tmp_path)
    for name in (*WORKSPACE, "AOS_AML_COMPUTE", "AOS_AML_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)
    write_jsonl(tmp_path / "data" / "train.jsonl", conversations(6))
    write_jsonl(tmp_path / "data" / "eval.jsonl", conversations(2, offset=10))
    write_configs(tmp_path, base_model="Qwen/Qwen2.5-0.5B-Instruct", train="data/train.jsonl",
                  evaluation="data/eval.jsonl", extra="training:\n  max_steps: 50\n  compute: gpu-a100\n")
    return tmp_path


def _adapter():
    return load_configs(["agent_configs"]).adapters["tiny-finance"]


def test_dry_run_yaml_round_trips_through_load_job(scratch: Path) -> None:
    from azure.ai.ml import load_job

    result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--config", "agent_configs",
                                       "--dry-run", "jobs/tiny.yaml"])
    assert result.exit_code == 0, result.output
    assert "wrote jobs/tiny.yaml" in result.output

    job = load_job(scratch / "jobs" / "tiny.yaml")
    command_job = job._to_job() if hasattr(job, "_to_job") else job
    assert type(command_job).__name__ == "CommandJob"
    assert command_job.command.startswith("python train_lora.py --base-model ${{inputs.base_model}} "
                                          "--train-file ${{inputs.training_data}} --eval-file ${{inputs.evaluation_data}}")
    assert "--output-dir ${{outputs.adapter}}" in command_job.command
    assert "--max-steps ${{inputs.max_steps}}" in command_job.command
    assert "--adapter-name tiny-finance --adapter-version 1" in command_job.command
    # every ${{inputs.x}} the command uses is an input of the job
    used = set(re.findall(r"\$\{\{inputs\.(\w+)\}\}", command_job.command))
    assert used == set(command_job.inputs)

    # local data: paths relative to the YAML file that exist, uploaded by the SDK on submission
    base = scratch / "jobs"
    for name, file in (("training_data", "train.jsonl"), ("evaluation_data", "eval.jsonl")):
        spec = command_job.inputs[name]
        assert spec.type == "uri_file"
        assert (base / spec.path).resolve() == (scratch / "data" / file).resolve()
    assert (base / command_job.code).resolve() == jobs.CODE_DIR
    assert command_job.inputs["base_model"] == "Qwen/Qwen2.5-0.5B-Instruct"
    assert command_job.inputs["rank"] == 4 and command_job.inputs["max_steps"] == 50
    assert command_job.inputs["target_modules"] == "q_proj,v_proj"
    assert command_job.outputs["adapter"].type == "uri_folder"
    assert command_job.compute == "gpu-a100"
    assert command_job.environment.image == jobs.BASE_IMAGE
    pip = command_job.environment.conda_file["dependencies"][-1]["pip"]
    assert pip == list(jobs.TRAINING_PACKAGES)
    assert command_job.experiment_name == "aos-adapters"
    assert command_job.tags["aos.adapter"] == "tiny-finance"


def test_remote_data_compute_and_environment_from_settings(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from azure.ai.ml import load_job

    write_configs(scratch, base_model="azureml:qwen-base:2", train="azureml://datastores/training/paths/fin/train.jsonl")
    monkeypatch.setenv("AOS_AML_COMPUTE", "cpu-cluster")
    monkeypatch.setenv("AOS_AML_ENVIRONMENT", "azureml:aos-lora:4")
    result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--config", "agent_configs",
                                       "--dry-run", "job.yaml", "--steps", "5"])
    assert result.exit_code == 0, result.output
    written = yaml.safe_load((scratch / "job.yaml").read_text())
    assert written["inputs"]["base_model"] == {"path": "azureml:qwen-base:2", "type": "custom_model"}
    job = load_job(scratch / "job.yaml")._to_job()
    assert job.inputs["training_data"].path == "azureml://datastores/training/paths/fin/train.jsonl"
    assert "evaluation_data" not in job.inputs and job.inputs["eval_fraction"] == 0.1
    assert job.inputs["base_model"].type == "custom_model"
    assert job.inputs["max_steps"] == 5
    assert job.compute == "cpu-cluster"
    assert written["environment"] == "azureml:aos-lora:4" and job.environment == "aos-lora:4"  # the SDK drops the prefix


def test_without_compute_the_job_runs_serverless_on_the_adapters_instance_type(scratch: Path) -> None:
    write_configs(scratch, base_model="Qwen/Qwen2.5-0.5B-Instruct", train="data/train.jsonl",
                  extra="training:\n  instance_type: Standard_NC40ads_H100_v5\n")
    run = jobs.plan(_adapter())
    job = jobs.build_job(run, _adapter(), environ={})._to_job()
    assert job.compute is None and job.resources.instance_type == "Standard_NC40ads_H100_v5"


def test_the_code_snapshot_is_the_training_script_alone() -> None:
    from azure.ai.ml._utils._asset_utils import get_ignore_file, get_upload_files_from_folder

    ignore = get_ignore_file(jobs.CODE_DIR)
    assert ignore.path == jobs.CODE_DIR / ".amlignore"
    uploaded = [Path(local).name for local, _ in get_upload_files_from_folder(jobs.CODE_DIR, ignore_file=ignore)]
    assert uploaded == ["train_lora.py"]


def test_training_packages_are_the_ml_extra_pins() -> None:
    extra = tomllib.loads((APP_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["ml"]
    # the training job needs no Azure SDK: azure-ai-ml (and what it pins) only submits it
    submit_only = ("azure-ai-ml", "azure-monitor-opentelemetry")
    assert sorted(jobs.TRAINING_PACKAGES) == sorted(r for r in extra if not r.startswith(submit_only))


def test_submitting_needs_a_workspace(scratch: Path) -> None:
    result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--config", "agent_configs"])
    assert result.exit_code == 1
    assert "no Azure ML workspace configured" in result.output and "--local" in result.output


def test_a_partial_workspace_is_an_error() -> None:
    with pytest.raises(jobs.JobError, match="AOS_AML_RESOURCE_GROUP, AOS_AML_WORKSPACE"):
        jobs.Workspace.from_settings({"AOS_AML_SUBSCRIPTION_ID": "x"})
    assert jobs.Workspace.from_settings({}) is None
    assert jobs.Workspace.from_settings(WORKSPACE) == jobs.Workspace("00000000-0000-0000-0000-000000000000",
                                                                    "rg-aos", "mlw-aos")


class FakeMLClient:
    """Records what would be sent to Azure ML; the job completes at once with a model card as output."""

    def __init__(self, card: dict[str, Any]) -> None:
        self.submitted: list[Any] = []
        self.models_created: list[Any] = []
        self._card = card
        self.jobs = SimpleNamespace(create_or_update=self._create, stream=lambda name: None,
                                    get=lambda name: SimpleNamespace(status="Completed"), download=self._download)
        self.models = SimpleNamespace(create_or_update=self._register, list=self._list)

    def _create(self, job: Any) -> Any:
        self.submitted.append(job)
        return SimpleNamespace(name="job-123", studio_url="https://ml.azure.com/runs/job-123")

    def _download(self, name: str, *, output_name: str, download_path: str) -> None:
        folder = Path(download_path) / "named-outputs" / output_name
        folder.mkdir(parents=True)
        (folder / "model_card.json").write_text(json.dumps(self._card))

    def _register(self, model: Any) -> Any:
        self.models_created.append(model)
        return model

    def _list(self, name: str) -> list[Any]:
        return [SimpleNamespace(version=m.version, path=m.path, tags=m.tags) for m in self.models_created if m.name == name]


def test_submit_with_a_workspace_then_register_the_output(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    card = {"base_model": "Qwen/Qwen2.5-0.5B-Instruct", "metrics": {"eval_loss": 1.25, "train_loss": 1.5},
            "data": {"training": {"sha256": "ab" * 32}}}
    client = FakeMLClient(card)
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jobs.Workspace, "client", lambda self, credential=None: client)

    result = CliRunner().invoke(main, ["adapters", "train", "tiny-finance", "--config", "agent_configs", "--wait"])
    assert result.exit_code == 0, result.output
    assert "submitted job job-123 (adapter tiny-finance version 1) to workspace mlw-aos" in result.output
    [job] = client.submitted
    assert job.inputs["training_data"]._data.path == str(scratch / "data" / "train.jsonl")  # the SDK uploads it
    [model] = client.models_created
    assert (model.name, model.version, model.type) == ("tiny-finance", "1", "custom_model")
    assert model.path == job_output_uri("job-123") == "azureml://jobs/job-123/outputs/adapter"
    assert model.tags["aos.metric.eval_loss"] == "1.25" and model.tags["aos.data_sha256"] == "ab" * 32
    assert "registered Azure ML model tiny-finance version 1 from job job-123: eval_loss 1.25" in result.output

    listed = CliRunner().invoke(main, ["adapters", "list", "--config", "agent_configs", "--azure", "--registry",
                                       str(scratch / "registry"), "--format", "json"])
    assert listed.exit_code == 0, listed.output
    [item] = json.loads(listed.output)["adapters"]
    assert item["azure_versions"] == [{"name": "tiny-finance", "version": "1", "path": model.path,
                                       "base_model": "Qwen/Qwen2.5-0.5B-Instruct",
                                       "metrics": {"eval_loss": "1.25", "train_loss": "1.5"}}]


def test_register_a_job_output_later(scratch: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    client = FakeMLClient({})
    for name, value in WORKSPACE.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(jobs.Workspace, "client", lambda self, credential=None: client)
    result = CliRunner().invoke(main, ["adapters", "register", "tiny-finance", "--job", "job-9", "--version", "2",
                                       "--config", "agent_configs"])
    assert result.exit_code == 0, result.output
    assert [(m.version, m.path) for m in client.models_created] == [("2", "azureml://jobs/job-9/outputs/adapter")]
    assert AzureModelRegistry(client).versions("tiny-finance")[0]["version"] == "2"


def test_the_model_entity_refuses_latest_as_a_version() -> None:
    from kernel.ml.registry import RegistryError

    with pytest.raises(RegistryError, match="not 'latest'"):
        azure_model("tiny-finance", "latest", path="azureml://jobs/x/outputs/adapter")
