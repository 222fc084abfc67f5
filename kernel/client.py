"""A small client for a running platform's HTTP API (``aos agents``, ``aos send-event``, ...).

The URL comes from ``--url``, else the ``AOS_URL`` setting (default http://127.0.0.1:7071). The
key comes from ``--key`` / ``$AOS_MASTER_KEY``, else from the run file ``aos run`` writes in its
state folder (``.aos/run.json``, readable only by its owner) when the URLs match — so commands
against your own local platform need no key at all. The key is sent as ``x-functions-key`` and
never printed.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

RUN_FILE = "run.json"


class PlatformUnreachable(RuntimeError):
    pass


class ApiError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def write_run_file(state_dir: Path, url: str, key: str) -> Path:
    """Record where the local platform listens and its key, for the commands that talk to it."""
    path = state_dir / RUN_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, stat.S_IRUSR | stat.S_IWUSR)
    with os.fdopen(fd, "w") as handle:
        json.dump({"url": url, "key": key, "pid": os.getpid()}, handle)
    return path


def remove_run_file(state_dir: Path) -> None:
    (state_dir / RUN_FILE).unlink(missing_ok=True)


def key_from_run_file(url: str, state_dir: Path) -> str | None:
    try:
        run = json.loads((state_dir / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    same = _normal(run.get("url", "")) == _normal(url)
    return str(run["key"]) if same and run.get("key") else None


def _normal(url: str) -> str:
    return url.rstrip("/").replace("://localhost", "://127.0.0.1")


@dataclass
class PlatformClient:
    url: str
    key: str | None = None
    timeout: float = 30.0

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        headers = {"x-functions-key": self.key} if self.key else {}
        target = f"{self.url.rstrip('/')}/api/{path.lstrip('/')}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session:
                async with session.request(method, target, json=body, headers=headers) as response:
                    text = await response.text()
                    status = response.status
        except (aiohttp.ClientConnectionError, asyncio.TimeoutError) as error:
            raise PlatformUnreachable(
                f"cannot reach the platform at {self.url} ({type(error).__name__}); start it with `aos run` "
                "or pass --url / set AOS_URL") from None
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError:
            data = text
        if status >= 400:
            message = data.get("error") if isinstance(data, dict) and "error" in data else text[:500]
            if status == 401:
                message = f"{message or 'unauthorized'} (pass --key or set AOS_MASTER_KEY)"
            raise ApiError(status, f"{method} /api/{path.lstrip('/')} failed ({status}): {message}")
        return data

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return asyncio.run(self.request(method, path, body))
