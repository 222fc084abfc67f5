"""The ``aos`` command line: validate configs, export schemas, show topology, run the platform."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from kernel.config import schemas
from kernel.config.loader import ConfigSet, load_configs
from kernel.topology import TopologyError, bicep_parameters, build_topology, emulator_config

DEFAULT_CONFIG_PATHS = ("agent_configs", "mcp_configs", "workflow_configs")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aos")
def main() -> None:
    """AOS, the Agent Operating System on Azure Functions."""


def _load(paths: tuple[str, ...]) -> ConfigSet:
    return load_configs(paths or DEFAULT_CONFIG_PATHS)


#: Every kind a ConfigSet holds, as the summary line names it (attribute, singular, plural).
SUMMARY_KINDS = (("namespaces", "namespace", "namespaces"),
                 ("endpoints", "inference endpoint", "inference endpoints"), ("agents", "agent", "agents"),
                 ("adapters", "adapter", "adapters"), ("mcp_servers", "MCP server", "MCP servers"),
                 ("policies", "policy", "policies"), ("workflows", "workflow", "workflows"))


def _summary(configs: ConfigSet) -> str:
    def count(attribute: str, singular: str, plural: str) -> str:
        number = len(getattr(configs, attribute))
        return f"{number} {singular if number == 1 else plural}"

    kinds = ", ".join(count(*kind) for kind in SUMMARY_KINDS)
    counts = f"{len(configs.files)} file(s): {kinds} valid"
    errors = len(configs.errors)
    warnings = len(configs.problems) - errors
    if not configs.problems:
        return f"{counts}; no problems"
    return f"{counts}; {errors} error(s), {warnings} warning(s)"


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option(
    "--format", "output_format", type=click.Choice(["text", "json"]), default="text", show_default=True
)
def validate(paths: tuple[str, ...], output_format: str) -> None:
    """Validate config files or folders (default: agent_configs mcp_configs workflow_configs).

    Exits 0 when there are no errors (warnings allowed), 1 otherwise.
    """
    configs = _load(paths)
    if output_format == "json":
        report = {
            "ok": configs.ok,
            "files": configs.files,
            "agents": sorted(configs.agents),
            "adapters": sorted(configs.adapters),
            "mcp_servers": sorted(configs.mcp_servers),
            "endpoints": sorted(configs.endpoints),
            "workflows": sorted(configs.workflows),
            "policies": sorted(configs.policies),
            "namespaces": sorted(configs.namespaces),
            "problems": [problem.to_dict() for problem in configs.problems],
        }
        click.echo(json.dumps(report, indent=2))
    else:
        for problem in configs.problems:
            click.echo(problem.render())
        click.echo(_summary(configs))
    sys.exit(0 if configs.ok else 1)


@main.command()
@click.option("--check", is_flag=True, help="Fail if the committed schemas differ from the models.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default="schemas", show_default=True)
def schema(check: bool, out_dir: str) -> None:
    """Write the JSON Schemas of every config kind and of the message envelope."""
    directory = Path(out_dir)
    if check:
        stale = schemas.drifted(directory)
        for path in stale:
            click.echo(f"{path}: differs from the models; run `aos schema` to regenerate", err=True)
        if stale:
            sys.exit(1)
        click.echo(f"{len(schemas.SCHEMA_MODELS)} schema(s) in {directory} match the models")
        return
    for path in schemas.write(directory):
        click.echo(f"wrote {path}")


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--bicep-params", "bicep_params", type=click.Path(dir_okay=False),
              help="Write the ARM parameters file infra/main.bicepparam loads (infra/topology.parameters.json).")
@click.option("--emulator-config", "emulator_config_path", type=click.Path(dir_okay=False),
              help="Write the Service Bus emulator's Config.json (emulator/Config.json).")
@click.option("--check", is_flag=True, help="Compare the files instead of writing them; exit 1 when one differs.")
def topology(paths: tuple[str, ...], bicep_params: str | None, emulator_config_path: str | None, check: bool) -> None:
    """Print the Service Bus topics, subscriptions and filters the configs imply, as JSON; or write
    them as the Bicep parameters file and the Service Bus emulator's Config.json.

    Problems go to stderr; the exit code is 1 when any config has an error (no file is written then).
    """
    configs = _load(paths)
    document, problems = build_topology(configs)
    for problem in configs.problems + problems:
        click.echo(problem.render(), err=True)
    failed = not configs.ok or any(p.severity == "error" for p in problems)
    if check and not (bicep_params or emulator_config_path):
        raise click.UsageError("--check needs --bicep-params or --emulator-config")
    if not (bicep_params or emulator_config_path):
        click.echo(json.dumps(document, indent=2))
        sys.exit(1 if failed else 0)
    try:
        files = {Path(path): render(document) for path, render in
                 ((bicep_params, bicep_parameters), (emulator_config_path, emulator_config)) if path}
    except TopologyError as error:
        click.echo(f"error: {error}", err=True)
        sys.exit(1)
    sys.exit(1 if failed or not _write_generated(files, check=check) else 0)


def _write_generated(files: dict[Path, dict], *, check: bool) -> bool:
    """Write each generated JSON file (``--check``: compare instead); False when one differs."""
    stale = []
    for path, content in files.items():
        text = json.dumps(content, indent=2) + "\n"
        if not check:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            click.echo(f"wrote {path}")
        elif not path.is_file() or path.read_text() != text:
            stale.append(path)
            click.echo(f"{path}: differs from the configs; run the same `aos topology` without --check to rewrite it",
                       err=True)
    if check and not stale:
        click.echo(f"{len(files)} file(s) match the configs")
    return not stale


def _register_optional_commands() -> None:
    """Commands that live beside the modules they drive: the engine's `host` and `send`, the platform's
    `run` and its clients, the agents' `context-mcp`."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("kernel.engine.cli") is None:
        return
    engine_cli = importlib.import_module("kernel.engine.cli")
    for name in ("host", "send"):
        command = getattr(engine_cli, name, None)
        if isinstance(command, click.Command):
            main.add_command(command, name)
    from kernel.inference.cli import COMMANDS as INFERENCE_COMMANDS
    from kernel.platform_cli import COMMANDS
    from kernel.governance.cli import COMMANDS as AUDIT_COMMANDS
    from kernel.governance.policy_cli import COMMANDS as POLICY_COMMANDS
    from kernel.tools_cli import COMMANDS as TOOL_COMMANDS
    from realm_of_agents.context_cli import context_mcp

    for command in [*COMMANDS, *TOOL_COMMANDS, *INFERENCE_COMMANDS, *AUDIT_COMMANDS, *POLICY_COMMANDS, context_mcp]:
        main.add_command(command)
    main.add_command(importlib.import_module("kernel.health.cli").health)  # aos health
    main.add_command(importlib.import_module("kernel.workflows.cli").workflows)  # aos workflows
    for command in importlib.import_module("kernel.telemetry.cli").COMMANDS:  # aos traces, aos trace
        main.add_command(command)


_register_optional_commands()


def _register_adapter_commands() -> None:
    """`aos adapters` (kernel/ml/cli.py): train, register and list LoRA adapters, export their data."""
    from kernel.ml.cli import COMMANDS as ADAPTER_COMMANDS

    for command in ADAPTER_COMMANDS:
        main.add_command(command)


_register_adapter_commands()


if __name__ == "__main__":
    main()
