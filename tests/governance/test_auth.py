"""Entra ID bearer tokens, validated against keys served by a real JWKS endpoint on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa

from kernel.governance.auth import Forbidden, Principal, TokenSettings, TokenValidator, Unauthorized, role_names

TENANT = "11111111-2222-3333-4444-555555555555"
AUDIENCE = "api://aos-test"


def _key(kid: str) -> tuple[Any, dict[str, Any]]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
    return private, {**public, "kid": kid, "use": "sig", "alg": "RS256"}


@pytest.fixture(scope="module")
def keys() -> dict[str, Any]:
    signing, signing_jwk = _key("k1")
    other, _ = _key("k-unpublished")
    return {"signing": signing, "jwks": {"keys": [signing_jwk]}, "other": other}


@pytest.fixture
async def validator(keys: dict[str, Any]) -> AsyncIterator[tuple[TokenValidator, dict[str, int]]]:
    fetched = {"count": 0}

    async def jwks(request: web.Request) -> web.Response:
        fetched["count"] += 1
        return web.json_response(keys["jwks"])

    app = web.Application()
    app.router.add_get("/discovery/v2.0/keys", jwks)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    settings = TokenSettings.for_tenant(TENANT, [AUDIENCE], jwks_url=f"http://127.0.0.1:{port}/discovery/v2.0/keys")
    try:
        yield TokenValidator(settings), fetched
    finally:
        await runner.cleanup()


def _token(key: Any, *, kid: str = "k1", **overrides: Any) -> str:
    now = int(time.time())
    claims = {"iss": f"https://login.microsoftonline.com/{TENANT}/v2.0", "aud": AUDIENCE, "sub": "user-1",
              "oid": "oid-1", "preferred_username": "dana@contoso.example", "iat": now, "nbf": now - 5,
              "exp": now + 600, "roles": ["AOS.Operator"]}
    claims.update(overrides)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


async def test_a_valid_token_gives_the_caller_and_nested_roles(validator, keys) -> None:
    check, fetched = validator
    caller = await check.principal("Bearer " + _token(keys["signing"]))
    assert caller == Principal(subject="oid-1", name="dana@contoso.example", roles=frozenset({"operator"}))
    assert caller.has("reader") and caller.has("operator") and not caller.has("admin")
    with pytest.raises(Forbidden, match="needs the 'admin' role; the caller has: operator"):
        caller.require("admin")
    await check.principal("Bearer " + _token(keys["signing"]))
    assert fetched["count"] == 1  # the keys are cached


async def test_v1_issuer_tokens_are_accepted_too(validator, keys) -> None:
    check, _ = validator
    caller = await check.principal("Bearer " + _token(keys["signing"], iss=f"https://sts.windows.net/{TENANT}/",
                                                      roles=["admin"]))
    assert caller.roles == frozenset({"admin"})


@pytest.mark.parametrize("overrides, reason", [
    ({"exp": int(time.time()) - 3600}, "the token has expired"),
    ({"nbf": int(time.time()) + 3600}, "the token is not valid yet"),
    ({"aud": "api://someone-else"}, "the token is for another audience"),
    ({"iss": "https://login.microsoftonline.com/another-tenant/v2.0"}, "issued by another tenant"),
    ({"exp": None}, "the token has no 'exp' claim"),
])
async def test_bad_tokens_are_refused_with_the_reason(validator, keys, overrides, reason) -> None:
    check, _ = validator
    with pytest.raises(Unauthorized, match=reason) as refused:
        await check.principal("Bearer " + _token(keys["signing"], **overrides))
    assert "dana" not in str(refused.value) and "oid-1" not in str(refused.value)


async def test_a_token_signed_with_another_key_is_refused(validator, keys) -> None:
    check, _ = validator
    forged = _token(keys["other"])  # claims the published key id, signed with another key
    with pytest.raises(Unauthorized, match="signature does not verify"):
        await check.principal("Bearer " + forged)
    with pytest.raises(Unauthorized, match="unknown key"):
        await check.principal("Bearer " + _token(keys["other"], kid="k-unpublished"))


async def test_a_token_without_our_roles_has_no_role(validator, keys) -> None:
    check, _ = validator
    caller = await check.principal("Bearer " + _token(keys["signing"], roles=["Directory.Read", "something"]))
    assert caller.roles == frozenset() and not caller.has("reader")
    with pytest.raises(Forbidden, match="the caller has: none"):
        caller.require("reader")


@pytest.mark.parametrize("header, reason", [
    (None, "no credentials"), ("", "no credentials"), ("Basic abc", "must be 'Bearer <token>'"),
    ("Bearer ", "must be 'Bearer <token>'"), ("Bearer not.a.jwt", "malformed"),
])
async def test_missing_or_malformed_credentials(validator, header, reason) -> None:
    check, _ = validator
    with pytest.raises(Unauthorized, match=reason):
        await check.principal(header)


def test_role_names_accept_the_usual_spellings() -> None:
    assert role_names(["AOS.Reader", "operator", "AOS.ADMIN", "Other", 3]) == frozenset({"reader", "operator", "admin"})
