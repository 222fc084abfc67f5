"""The ``aos`` command line: validate configs, export schemas, show topology, run the platform."""

from __future__ import annotations

import click


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="aos")
def main() -> None:
    """AOS, the Agent Operating System on Azure Functions."""


def _register_optional_commands() -> None:
    """Commands that live beside the modules they drive (the engine's `host` and `send`)."""
    import importlib
    import importlib.util

    if importlib.util.find_spec("kernel.engine.cli") is None:
        return
    engine_cli = importlib.import_module("kernel.engine.cli")
    for name in ("host", "send"):
        command = getattr(engine_cli, name, None)
        if isinstance(command, click.Command):
            main.add_command(command, name)


_register_optional_commands()
