"""``aos adapters``: list adapters and their versions, train (locally or in Azure ML), register, export data.

torch, transformers, peft and azure-ai-ml are imported only by the commands that need them, so
the rest of ``aos`` starts without them. See docs/adapters.md.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import click

from kernel import settings
from kernel.config.loader import ConfigSet, load_configs
from kernel.config.models import AdapterConfig
from kernel.ml.registry import (
    LATEST,
    LocalRegistry,
    RegisteredVersion,
    RegistryError,
    read_card,
    version_key,
)

DEFAULT_CONFIGS = ("agent_configs", "mcp_configs")

_config_option = click.option(
    "--config", "config_paths", multiple=True, type=click.Path(),
    help="Config files or folders (repeatable; default: agent_configs mcp_configs).")
_registry_option = click.option(
    "--registry", "registry_dir", type=click.Path(file_okay=False),
    help="Local adapter registry (default: AOS_ADAPTER_REGISTRY_DIR, else AOS_STATE_DIR/adapters).")


def _configs(paths: tuple[str, ...]) -> ConfigSet:
    return load_configs(paths or DEFAULT_CONFIGS)


def _registry(registry_dir: str | None) -> LocalRegistry:
    return LocalRegistry(Path(registry_dir) if registry_dir else settings.adapter_registry_dir(settings.environment()))


def _adapter(configs: ConfigSet, name: str) -> AdapterConfig:
    adapter = configs.adapters.get(name)
    if adapter is None:
        for problem in configs.errors:
            click.echo(problem.render(), err=True)
        known = ", ".join(sorted(configs.adapters)) or "none"
        raise click.ClickException(f"unknown adapter '{name}' (configured adapters: {known})")
    return adapter


def _require(modules: tuple[str, ...], purpose: str) -> None:
    """A clear error instead of an ImportError when the `ml` extra is not installed."""
    import importlib.util

    def installed(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            return False

    missing = [name for name in modules if not installed(name)]
    if missing:
        raise click.ClickException(
            f"{purpose} needs {', '.join(missing)} (the `ml` extra): pip install torch==2.13.0, then "
            "pip install -e '.[ml]' (`make test` installs both)")


def _metrics_text(metrics: dict[str, Any]) -> str:
    shown = [f"{key} {metrics[key]:.4g}" if isinstance(metrics.get(key), float) else f"{key} {metrics[key]}"
             for key in ("eval_loss", "train_loss", "steps") if metrics.get(key) is not None]
    return ", ".join(shown) or "no metrics"


@click.group("adapters")
def adapters() -> None:
    """LoRA adapters: list, train, register, export training data (docs/adapters.md)."""


# ------------------------------------------------------------------------------------------ list


def _usage(configs: ConfigSet, registry: LocalRegistry, name: str) -> list[dict[str, Any]]:
    from kernel.ml.export import agents_using

    used = []
    for agent in agents_using(name, configs):
        wanted = agent.model.adapter.version  # type: ignore[union-attr]
        try:
            resolved: str | None = registry.resolve(name, wanted).version
            problem = None
        except RegistryError as error:
            resolved, problem = None, str(error)
        used.append({"agent": agent.id, "version": wanted, "pinned": wanted != LATEST, "resolves_to": resolved,
                     "problem": problem})
    return used


@adapters.command("list")
@_config_option
@_registry_option
@click.option("--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.option("--azure", is_flag=True, help="Also list the versions in the Azure ML workspace (AOS_AML_*).")
def list_adapters(config_paths: tuple[str, ...], registry_dir: str | None, output_format: str, azure: bool) -> None:
    """Adapters, their registered versions and metrics, and which agents use which version."""
    configs = _configs(config_paths)
    registry = _registry(registry_dir)
    azure_registry = _azure_registry() if azure else None
    report = []
    for name, adapter in sorted(configs.adapters.items()):
        item = {
            "name": name, "base_model": adapter.base_model, "config_version": adapter.version,
            "training_data": adapter.training_data.uri,
            "versions": [v.to_dict() for v in registry.versions(name)],
            "agents": _usage(configs, registry, name),
        }
        if azure_registry is not None:
            item["azure_versions"] = azure_registry.versions(name)
        report.append(item)
    unconfigured = [name for name in registry.names() if name not in configs.adapters]
    if output_format == "json":
        click.echo(json.dumps({"registry": str(registry.root), "adapters": report, "unconfigured": unconfigured},
                              indent=2))
        return
    click.echo(f"registry: {registry.root}")
    for item in report:
        click.echo(f"{item['name']}  base {item['base_model']}  (config version {item['config_version']}, "
                   f"data {item['training_data']})")
        if item["versions"]:
            for version in item["versions"]:
                other_base = version["base_model"] and version["base_model"] != item["base_model"]
                click.echo(f"  version {version['version']}: {_metrics_text(version['metrics'])}; "
                           f"registered {version['registered'][:19]}"
                           + (f" (trained on {version['base_model']})" if other_base else ""))
        else:
            click.echo(f"  no version registered: aos adapters train {item['name']} --local")
        for azure_version in item.get("azure_versions", []):
            click.echo(f"  azure ml version {azure_version['version']}: {_metrics_text(azure_version['metrics'])}")
        if not item["agents"]:
            click.echo("  used by no agent")
        for use in item["agents"]:
            wanted = f"pins {use['version']}" if use["pinned"] else "floats (latest)"
            state = f"-> {use['resolves_to']}" if use["resolves_to"] else "-> NOT REGISTERED"
            click.echo(f"  agent {use['agent']}: {wanted} {state}")
    for name in unconfigured:
        click.echo(f"{name}  registered, but no adapter config names it")


# ------------------------------------------------------------------------------------------ train


@adapters.command("train")
@click.argument("name")
@_config_option
@_registry_option
@click.option("--dry-run", "dry_run", type=click.Path(dir_okay=False),
              help="Write the Azure ML job YAML to this file and submit nothing.")
@click.option("--local", is_flag=True, help="Train on this machine (the job's script) and register locally.")
@click.option("--steps", type=click.IntRange(min=1), help="Stop after N steps (overrides training.max_steps).")
@click.option("--epochs", type=click.FloatRange(min=0, min_open=True), help="Overrides training.epochs.")
@click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), help="Overrides training.learning_rate.")
@click.option("--batch-size", type=click.IntRange(min=1), help="Overrides training.batch_size.")
@click.option("--version", "version", help="Register this version instead of the config's `version`.")
@click.option("--base-model", help="Another base model (an id or a local folder), e.g. a small one for a smoke test.")
@click.option("--replace", is_flag=True, help="Overwrite the version if it is already registered.")
@click.option("--cpu", is_flag=True, help="--local: train on the CPU even when a GPU is present.")
@click.option("--wait", is_flag=True, help="Azure ML: stream the job and register its output when it completes.")
def train(name: str, config_paths: tuple[str, ...], registry_dir: str | None, dry_run: str | None, local: bool,
          steps: int | None, epochs: float | None, learning_rate: float | None, batch_size: int | None,
          version: str | None, base_model: str | None, replace: bool, cpu: bool, wait: bool) -> None:
    """Train adapter NAME: --local here, --dry-run OUT to write the Azure ML job, else submit it to Azure ML."""
    from kernel.ml import jobs

    if local and dry_run:
        raise click.UsageError("--local and --dry-run exclude each other")
    adapter = _adapter(_configs(config_paths), name)
    overrides = {"max_steps": steps, "epochs": epochs, "learning_rate": learning_rate, "batch_size": batch_size}
    try:
        run = jobs.plan(adapter, version=version, base_model=base_model, overrides=overrides)
        _check_data(run)
        if local:
            jobs.check_local(run)
            _require(("torch", "transformers", "peft"), "training locally")
            _train_locally(run, _registry(registry_dir), replace=replace, cpu=cpu)
            return
        workspace = None if dry_run else jobs.Workspace.from_settings(settings.environment())
        if dry_run is None and workspace is None:
            raise click.ClickException(
                "no Azure ML workspace configured (AOS_AML_SUBSCRIPTION_ID, AOS_AML_RESOURCE_GROUP, AOS_AML_WORKSPACE): "
                "train with --local, or write the job with --dry-run FILE")
        if run.missing():
            message = f"adapter '{run.name}': {', '.join(run.missing())} does not exist"
            if dry_run is None:
                raise click.ClickException(message + "; the job could not upload it")
            click.echo(f"warning: {message}; the job will fail until it does", err=True)
        _require(("azure.ai.ml",), "an Azure ML job")
        job = jobs.build_job(run, adapter, environ=settings.environment())
        if dry_run is not None:
            path = jobs.write_job_yaml(job, Path(dry_run))
            click.echo(f"wrote {path}: adapter {run.name} version {run.version}; submit with `az ml job create -f {path}` "
                       f"or configure AOS_AML_* and run `aos adapters train {run.name}`")
            return
        assert workspace is not None
        client = workspace.client()
        created = jobs.submit(job, client)
        click.echo(f"submitted job {created.name} (adapter {run.name} version {run.version}) to workspace "
                   f"{workspace.name}: {getattr(created, 'studio_url', '')}")
        if not wait:
            click.echo(f"when it completes: aos adapters register {run.name} --job {created.name} --version {run.version}")
            return
        client.jobs.stream(created.name)
        status = client.jobs.get(created.name).status
        if status != "Completed":
            raise click.ClickException(f"job {created.name} ended {status}; nothing registered")
        _register_job(client, run.name, run.version, created.name)
    except (jobs.JobError, RegistryError) as error:
        raise click.ClickException(str(error)) from None


def _check_data(run: Any) -> None:
    """Read the local data files as train_lora will, so a bad line fails now, not in a job or after loading a model."""
    from kernel.ml.train_lora import DataError, read_conversations

    for key in ("training_data", "evaluation_data"):
        path = run.local_paths().get(key)
        if path is not None and path.exists():
            try:
                read_conversations(path)
            except DataError as error:
                raise click.ClickException(f"adapter '{run.name}': {key}: {error}") from None


def _train_locally(run: Any, registry: LocalRegistry, *, replace: bool, cpu: bool) -> None:
    from kernel.ml import jobs

    if registry.exists(run.name, run.version) and not replace:
        raise RegistryError(
            f"adapter '{run.name}' version '{run.version}' is already registered in {registry.root}: bump `version` "
            "in the adapter's config (or pass --version), or pass --replace")
    staging_root = registry.root / ".staging"
    staging_root.mkdir(parents=True, exist_ok=True)
    output = Path(tempfile.mkdtemp(prefix=f"{run.name}-{run.version}-", dir=staging_root))
    try:
        command = jobs.local_command(run, output, cpu=cpu)
        click.echo(f"training {run.name} version {run.version} on {run.base_model}: {' '.join(command[1:3])} ...")
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        assert process.stdout is not None
        for line in process.stdout:
            click.echo(line.rstrip("\n"))
        if process.wait() != 0:
            raise click.ClickException(f"training failed (train_lora exited {process.returncode}); nothing registered")
        card = read_card(output)
        entry = registry.register(run.name, run.version, output, replace=replace, move=True,
                                  source={"kind": "local", "command": "aos adapters train --local",
                                          "base_model": run.base_model})
    finally:
        shutil.rmtree(output, ignore_errors=True)
    click.echo(f"registered {entry.name} version {entry.version} at {entry.path}: {_metrics_text(card.get('metrics') or {})}")


# ------------------------------------------------------------------------------------------ register


def _azure_registry() -> Any:
    from kernel.ml import jobs
    from kernel.ml.registry import AzureModelRegistry

    _require(("azure.ai.ml", "azure.identity"), "the Azure ML model registry")
    try:
        workspace = jobs.Workspace.from_settings(settings.environment())
    except jobs.JobError as error:
        raise click.ClickException(str(error)) from None
    if workspace is None:
        raise click.ClickException("no Azure ML workspace configured (AOS_AML_SUBSCRIPTION_ID, "
                                   "AOS_AML_RESOURCE_GROUP, AOS_AML_WORKSPACE)")
    return AzureModelRegistry(workspace.client())


def _register_job(client: Any, name: str, version: str, job_name: str) -> None:
    from kernel.ml.registry import AzureModelRegistry

    card: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as scratch:
        try:
            client.jobs.download(job_name, output_name="adapter", download_path=scratch)
            card = read_card(Path(scratch) / "named-outputs" / "adapter")
        except Exception as error:  # metrics are a nicety; the registration is what matters
            click.echo(f"could not read the job's model card ({error}); registering without metrics", err=True)
    model = AzureModelRegistry(client).register_job_output(name, version, job_name, card=card)
    click.echo(f"registered Azure ML model {model.name} version {model.version} from job {job_name}: "
               f"{_metrics_text(card.get('metrics') or {})}")


@adapters.command("register")
@click.argument("name")
@click.argument("folder", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--job", "job_name", help="Register the `adapter` output of this Azure ML job in the workspace.")
@click.option("--version", "version", help="Default: the adapter config's version.")
@click.option("--replace", is_flag=True, help="Overwrite an existing local version.")
@_config_option
@_registry_option
def register(name: str, folder: str | None, job_name: str | None, version: str | None, replace: bool,
             config_paths: tuple[str, ...], registry_dir: str | None) -> None:
    """Register a trained adapter FOLDER locally, or an Azure ML job's output (--job) in the workspace."""
    if (folder is None) == (job_name is None):
        raise click.UsageError("give either a FOLDER (local registry) or --job JOB (Azure ML)")
    adapter = _adapter(_configs(config_paths), name)
    version = version or adapter.version
    try:
        if folder is not None:
            entry = _registry(registry_dir).register(name, version, Path(folder), replace=replace,
                                                     source={"kind": "folder", "path": str(Path(folder).resolve())})
            click.echo(f"registered {entry.name} version {entry.version} at {entry.path}: {_metrics_text(entry.metrics)}")
        else:
            _register_job(_azure_registry().client, name, version, job_name)  # type: ignore[arg-type]
    except RegistryError as error:
        raise click.ClickException(str(error)) from None


# ------------------------------------------------------------------------------------------ export


@adapters.command("export-data")
@click.argument("name")
@click.option("--out", "out", type=click.Path(dir_okay=False, allow_dash=True), default="-", show_default=True,
              help="JSONL file to write ('-': standard output; the report goes to standard error).")
@click.option("--agent", "agent_ids", multiple=True, help="Only this agent's turns (repeatable; default: "
              "the adapter's export.agents, else every agent that uses the adapter).")
@click.option("--max-turns", type=click.IntRange(min=1), default=100_000, show_default=True,
              help="Newest turns read per agent, at most.")
@_config_option
def export_data(name: str, out: str, agent_ids: tuple[str, ...], max_turns: int, config_paths: tuple[str, ...]) -> None:
    """Archived turns of the agents that use adapter NAME as redacted chat JSONL for training."""
    from kernel.adapters.factory import Adapters
    from kernel.ml.export import ExportError, export_turns, write_jsonl
    from realm_of_agents.archive import TurnArchive

    configs = _configs(config_paths)
    adapter = _adapter(configs, name)

    async def run() -> tuple[list[dict[str, Any]], Any]:
        ports = Adapters(settings.environment())
        try:
            archive = TurnArchive(ports.blobs, ports.tables)
            return await export_turns(adapter, configs, archive, agents=agent_ids or None, max_turns=max_turns)
        finally:
            await ports.close()

    try:
        lines, report = asyncio.run(run())
    except ExportError as error:
        raise click.ClickException(str(error)) from None
    if out == "-":
        for line in lines:
            click.echo(json.dumps(line, ensure_ascii=False))
        click.echo(report.render(), err=True)
    else:
        path = write_jsonl(lines, Path(out))
        click.echo(report.render())
        click.echo(f"wrote {path}")


# ------------------------------------------------------------------------------------------ serving


@adapters.command("lora-modules")
@_config_option
@_registry_option
def lora_modules(config_paths: tuple[str, ...], registry_dir: str | None) -> None:
    """vLLM `--lora-modules` arguments serving every adapter agents use, at the version they resolve to.

    A served adapter is named after the adapter, so one folder per name: when agents pin different
    versions of one adapter, the highest is served and a warning names the others.
    """
    configs = _configs(config_paths)
    registry = _registry(registry_dir)
    modules = []
    for name in sorted(configs.adapters):
        chosen: dict[str, RegisteredVersion] = {}
        for use in _usage(configs, registry, name):
            if use["problem"]:
                click.echo(f"warning: agent {use['agent']}: {use['problem']}", err=True)
            elif use["resolves_to"]:
                chosen[use["resolves_to"]] = registry.resolve(name, use["resolves_to"])
        if not chosen:
            continue
        served = chosen[max(chosen, key=version_key)]
        if len(chosen) > 1:
            click.echo(f"warning: agents use versions {', '.join(sorted(chosen, key=version_key))} of {name}; "
                       f"serving {served.version}", err=True)
        modules.append(f"{name}={served.path}")
    if not modules:
        raise click.ClickException("no agent uses a registered adapter version")
    click.echo("--enable-lora --lora-modules " + " ".join(modules))


COMMANDS = [adapters]


def main() -> None:  # pragma: no cover - `python -m kernel.ml.cli`
    adapters(prog_name="aos adapters")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
