"""What the figures were measured on: machine, disk of the state folder, and package versions.

Figures only mean something next to the machine that produced them, so every JSON result
carries this block.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

#: Distributions whose versions the results record (None when not installed).
PACKAGES = ("aos", "azure-functions", "azure-functions-durable", "langgraph", "langgraph-checkpoint-sqlite",
            "langgraph-checkpoint", "autogen-core", "mcp", "pyinstrument")


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def disk(path: Path) -> dict[str, Any]:
    """The file system holding ``path``: mount point, type and device (from /proc/mounts) and free space."""
    path = path.resolve()
    found: dict[str, Any] = {"path": str(path)}
    try:
        mounts = [line.split()[:3] for line in Path("/proc/mounts").read_text().splitlines()]
        best = max((m for m in mounts if len(m) == 3 and _under(path, m[1])), key=lambda m: len(m[1]), default=None)
        if best:
            found.update(device=best[0], mount=best[1], fs_type=best[2])
    except OSError:
        pass
    stats = os.statvfs(path)
    found["free_gib"] = round(stats.f_bavail * stats.f_frsize / 2**30, 1)
    return found


def _under(path: Path, mount: str) -> bool:
    return path == Path(mount) or Path(mount) in path.parents


def versions() -> dict[str, str | None]:
    """Installed versions of the packages the figures depend on, and the SQLite library's."""
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    found["sqlite3_library"] = sqlite3.sqlite_version
    return found


def describe(state_dir: Path) -> dict[str, Any]:
    """The machine block of a result."""
    return {
        "cpu_model": cpu_model(),
        "cores": os.cpu_count(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "os": platform.platform(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "state_dir_disk": disk(state_dir),
    }
