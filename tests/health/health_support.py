"""Helpers for the health tests: config documents, loopback ports, the platform and Azurite paths."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from kernel.settings import APP_ROOT

AZURITE = APP_ROOT / "node_modules" / ".bin" / "azurite"
EVERYTHING = ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]

requires_node = pytest.mark.skipif(
    shutil.which("node") is None or not (APP_ROOT / EVERYTHING[0]).is_file(),
    reason="the MCP reference servers need node and node_modules (run `make setup`)",
)


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document))


def agent(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "agent", "id": agent_id, "display_name": agent_id.title(),
            "purpose": "Keep the ledger current and explain changes.",
            "subscriptions": [{"event_types": ["ledger.*"]}], **fields}


def everything() -> dict[str, Any]:
    return {"kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node", "args": EVERYTHING}


TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
AUDIENCE = "api://aos-health"


@contextlib.asynccontextmanager
async def identity() -> AsyncIterator[tuple[str, Callable[..., str]]]:
    """A test signing key whose JWKS is served on loopback: (the JWKS URL, a token factory taking
    app roles and claim overrides), as Entra ID would issue them for the AOS API."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())), "kid": "health", "alg": "RS256"}

    async def keys(request: web.Request) -> web.Response:
        return web.json_response({"keys": [public]})

    app = web.Application()
    app.router.add_get("/keys", keys)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    def token(*roles: str, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "aud": AUDIENCE, "sub": "s",
                  "oid": "operator-1", "iat": now, "nbf": now - 5, "exp": now + 600, "roles": list(roles), **overrides}
        return jwt.encode(claims, private, algorithm="RS256", headers={"kid": "health"})

    try:
        yield f"http://127.0.0.1:{port}/keys", token
    finally:
        await runner.cleanup()
