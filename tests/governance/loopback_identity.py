"""A test identity provider: a signing key whose JWKS is served on loopback, and a token factory.

Tokens look like what Entra ID issues for the AOS API (v2 issuer of ``tenant``, ``audience``, app
roles in ``roles``), so the real validator (kernel/governance/auth.py) checks them end to end.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa


@contextlib.asynccontextmanager
async def loopback_identity(tenant: str, audience: str, *, kid: str = "test",
                            subject: str = "caller") -> AsyncIterator[tuple[str, Callable[..., str]]]:
    """Yields (the JWKS URL, ``token(*roles, **claim_overrides)``)."""
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key())), "kid": kid, "alg": "RS256"}

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
        claims = {"iss": f"https://login.microsoftonline.com/{tenant}/v2.0", "aud": audience, "sub": "s",
                  "oid": subject, "iat": now, "nbf": now - 5, "exp": now + 600, "roles": list(roles), **overrides}
        return jwt.encode(claims, private, algorithm="RS256", headers={"kid": kid})

    try:
        yield f"http://127.0.0.1:{port}/keys", token
    finally:
        await runner.cleanup()
