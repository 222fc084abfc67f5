"""A small client for a running platform's HTTP API (``aos agents``, ``aos send-event``, ...).

The URL comes from ``--url``, else the ``AOS_URL`` setting (default http://127.0.0.1:7071). The
key comes from ``--key`` / ``$AOS_MASTER_KEY``, else from the run file ``aos run`` writes in its
state folder (``.aos/run.json``, readable only by its owner) when the URLs match — so commands
against your own local platform need no key at all. The key is sent as ``x-functions-key`` and
never printed.

With ``AOS_AUTH=entra`` the platform wants an Entra ID bearer token instead: ``--token`` /
``$AOS_TOKEN`` gives one, or ``--auth-scope`` / ``$AOS_AUTH_SCOPE`` (``api://<app-id>/.default``)
has azure-identity's ``DefaultAzureCredential`` get one (``az login``, a managed identity, a
workload identity, ...), imported only then. The token is sent as ``Authorization: Bearer`` and,
like the key, never printed, logged or put in an error message.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from kernel.adapters import redact

RUN_FILE = "run.json"


class PlatformUnreachable(RuntimeError):
    pass


class SignInFailed(RuntimeError):
    """No token could be had for the scope (the message names the scope and the credential's complaint)."""


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
    key: str | None = field(default=None, repr=False)
    timeout: float = 30.0
    token: str | None = field(default=None, repr=False)
    token_scope: str | None = None
    _bearer_source: "Bearer" = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._bearer_source = Bearer(self.token, self.token_scope)

    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """The answer's JSON; :class:`ApiError` for a status of 400 or more."""
        headers = {"x-functions-key": self.key} if self.key else {}
        bearer = await self._bearer()
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        target = f"{self.url.rstrip('/')}/api/{path.lstrip('/')}"
        try:
            async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as session, \
                    session.request(method, target, json=body, headers=headers) as response:
                text = await response.text()
                status = response.status
                challenge = response.headers.get("WWW-Authenticate", "")
        except (aiohttp.ClientConnectionError, TimeoutError) as error:
            raise PlatformUnreachable(
                f"cannot reach the platform at {self.url} ({type(error).__name__}); start it with `aos run` "
                "or pass --url / set AOS_URL") from None
        try:
            data = json.loads(text) if text else None
        except json.JSONDecodeError:
            data = text
        if status >= 400:
            message = data.get("error") if isinstance(data, dict) and "error" in data else text[:500]
            if status == 401 and challenge.lower().startswith("bearer"):
                message = (f"{message or 'unauthorized'} (the platform wants an Entra ID token: pass --token or set "
                           "AOS_TOKEN, or set AOS_AUTH_SCOPE to sign in with DefaultAzureCredential)")
            elif status == 401:
                message = f"{message or 'unauthorized'} (pass --key or set AOS_MASTER_KEY)"
            raise ApiError(status, f"{method} /api/{path.lstrip('/')} failed ({status}): {message}")
        return data

    def call(self, method: str, path: str, body: Any = None) -> Any:
        return asyncio.run(self.request(method, path, body))

    async def _bearer(self) -> str | None:
        return await self._bearer_source.get()


@dataclass
class Bearer:
    """The Entra ID token a client sends: the one given, else one for ``scope`` from
    ``DefaultAzureCredential``, kept until a minute before it expires; ``None`` without either."""

    token: str | None = field(default=None, repr=False)
    scope: str | None = None
    _signed_in: tuple[str, float] | None = field(default=None, init=False, repr=False)  # (token, expires_on)

    async def get(self) -> str | None:
        """The token to send now (signing in again when the kept one is about to expire);
        :class:`SignInFailed` when no token can be had for the scope."""
        if self.token:
            return self.token
        if not self.scope:
            return None
        if self._signed_in is None or self._signed_in[1] - 60 < time.time():
            self._signed_in = await _sign_in(self.scope)
        return self._signed_in[0]


async def _sign_in(scope: str) -> tuple[str, float]:
    """A token for ``scope`` from ``DefaultAzureCredential`` (azure-identity, imported only here)."""
    from azure.core.exceptions import ClientAuthenticationError
    from azure.identity.aio import DefaultAzureCredential

    try:
        async with DefaultAzureCredential() as credential:
            token = await credential.get_token(scope)
    except ClientAuthenticationError as error:
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise SignInFailed(f"cannot get a token for {scope} with DefaultAzureCredential ({type(error).__name__}): "
                           f"{redact(first_line)[:300]}; sign in with `az login`, or pass --token") from None
    return token.token, float(token.expires_on)
