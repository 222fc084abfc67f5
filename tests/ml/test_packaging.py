"""The ML packages: in the `ml` extra, installed by `make test` (torch first, pinned), never in the Function Apps."""

from __future__ import annotations

import re
import tomllib

from kernel.settings import APP_ROOT

ML_PACKAGES = {"torch", "transformers", "peft", "accelerate", "azure-ai-ml", "tokenizers", "datasets"}


def _name(requirement: str) -> str:
    return re.split(r"[=<>\[;]", requirement, maxsplit=1)[0].strip().lower()


def test_the_ml_extra_pins_torch_and_the_function_apps_do_not_install_it() -> None:
    project = tomllib.loads((APP_ROOT / "pyproject.toml").read_text())["project"]
    ml = {_name(r): r for r in project["optional-dependencies"]["ml"]}
    assert {"torch", "transformers", "peft", "accelerate", "azure-ai-ml"} <= set(ml)
    assert re.fullmatch(r"torch==\d+\.\d+\.\d+", ml["torch"])
    runtime = {_name(r) for r in project["dependencies"]}
    requirements = {_name(line) for line in (APP_ROOT / "requirements.txt").read_text().splitlines()
                    if line.strip() and not line.startswith("#")}
    assert not (runtime | requirements) & ML_PACKAGES


def test_make_installs_pinned_torch_before_the_ml_extra() -> None:
    makefile = (APP_ROOT / "Makefile").read_text()
    rule = makefile[makefile.index("$(ML_STAMP):"):]
    rule = rule[:rule.index("\n\n")]
    torch_line = next(i for i, line in enumerate(rule.splitlines()) if "torch==" in line)
    extra_line = next(i for i, line in enumerate(rule.splitlines()) if ".[dev,ml]" in line)
    assert torch_line < extra_line
    assert "grep -m1 -o 'torch==[0-9.]*' pyproject.toml" in rule  # the pin comes from the ml extra


def test_only_make_test_installs_the_ml_extra() -> None:
    """`make run` must not pull torch onto a machine that only wants the demo."""
    makefile = (APP_ROOT / "Makefile").read_text()
    targets = {line.split(":")[0]: line.split(":", 1)[1].split() for line in makefile.splitlines()
               if line and not line.startswith(("\t", "#", " ")) and ":" in line and "=" not in line}
    assert "$(ML_STAMP)" in targets["test"]
    assert "$(ML_STAMP)" not in targets["run"] and "$(ML_STAMP)" not in targets["setup"]
