"""The SecretStore contract, on an environment mapping and on Key Vault.

Key Vault cannot run here, so the Key Vault store talks to a real HTTPS server on loopback that
answers the Key Vault REST calls the SDK makes (``GET /secrets/{name}/?api-version=...``), including
the challenge flow: the first request is answered 401 with a ``WWW-Authenticate`` challenge, then
the SDK asks the credential for a token and retries with it. The credential is a stub (it is not
our code); the SDK, its pipeline, TLS and our adapter are real.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from kernel.adapters.azure_secrets import KeyVaultSecretStore
from kernel.adapters.embedded_secrets import EnvironmentSecretStore
from kernel.config.references import UnresolvedReference
from kernel.ports import SecretStore

TOKEN = "stub-access-token"
SECRETS = {"openai-api-key": "sk-live-123", "db-password": "p@ss;word="}


def _certificate(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "vault.pem", folder / "vault.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


@dataclass
class FakeVault:
    """Key Vault's secret GET, with its authentication challenge, served over TLS on loopback."""

    url: str = ""
    ca_file: str = ""
    secrets: dict[str, str] = field(default_factory=lambda: dict(SECRETS))
    reads: list[str] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)  # name -> HTTP status to answer
    delay: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return web.json_response(
                {"error": {"code": "Unauthorized", "message": "AKV10000: Request is missing a Bearer token."}},
                status=401,
                headers={"WWW-Authenticate": 'Bearer authorization="https://login.microsoftonline.com/tenant-id", '
                                             'resource="https://vault.azure.net"'},
            )
        assert request.query.get("api-version"), "the SDK always sends an api-version"
        name = request.match_info["name"]
        self.reads.append(name)
        if self.delay:
            await asyncio.sleep(self.delay)
        if name in self.failures:
            status = self.failures[name]
            return web.json_response({"error": {"code": "Forbidden" if status == 403 else "InternalError",
                                                "message": f"denied; by the way the value is {SECRETS['db-password']}"}},
                                     status=status)
        if name not in self.secrets:
            return web.json_response({"error": {"code": "SecretNotFound",
                                                "message": f"A secret with (name/id) {name} was not found in this key vault."}},
                                     status=404)
        return web.json_response({
            "value": self.secrets[name],
            "id": f"{self.url}/secrets/{name}/0123456789abcdef0123456789abcdef",
            "attributes": {"enabled": True, "created": 1700000000, "updated": 1700000000, "recoveryLevel": "Recoverable"},
        })


class StubCredential:
    """Stands in for DefaultAzureCredential: hands out a fixed token and records the scopes asked for."""

    def __init__(self) -> None:
        self.scopes: list[tuple[str, ...]] = []

    async def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        self.scopes.append(scopes)
        return AccessToken(TOKEN, int(time.time()) + 3600)

    async def close(self) -> None:
        return None


@pytest.fixture
async def vault(tmp_path: Path) -> AsyncIterator[FakeVault]:
    cert, key = _certificate(tmp_path)
    fake = FakeVault(ca_file=str(cert))
    app = web.Application()
    app.router.add_get("/secrets/{name}/", fake.handle)
    app.router.add_get("/secrets/{name}", fake.handle)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=context)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    fake.url = f"https://127.0.0.1:{port}"
    yield fake
    await runner.cleanup()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _key_vault_store(vault: FakeVault, credential: Any = None, **options: Any) -> KeyVaultSecretStore:
    # The challenge names https://vault.azure.net, which a loopback URL cannot match: skip that check here.
    return KeyVaultSecretStore(vault.url, credential or StubCredential(), connection_verify=vault.ca_file,
                               verify_challenge_resource=False, **options)


@pytest.fixture(params=["environment", "keyvault"])
async def secret_store(request: pytest.FixtureRequest, vault: FakeVault) -> AsyncIterator[SecretStore]:
    if request.param == "environment":
        store: Any = EnvironmentSecretStore({"OPENAI_API_KEY": SECRETS["openai-api-key"],
                                             "DB_PASSWORD": SECRETS["db-password"]})
    else:
        store = _key_vault_store(vault)
    yield store
    await store.close()


# -- the contract, on both -----------------------------------------------------------------------


async def test_is_a_secret_store(secret_store: SecretStore) -> None:
    assert isinstance(secret_store, SecretStore)


async def test_known_secrets_resolve(secret_store: SecretStore) -> None:
    assert await secret_store.get("openai-api-key") == "sk-live-123"
    assert await secret_store.get("db-password") == "p@ss;word="


async def test_a_missing_secret_names_the_reference_and_no_value(secret_store: SecretStore) -> None:
    with pytest.raises(UnresolvedReference) as raised:
        await secret_store.get("no-such-secret")
    message = str(raised.value)
    assert "${secret:no-such-secret}" in message
    assert not any(value in message for value in SECRETS.values())


@pytest.mark.parametrize("name", ["", "has_underscore", "x" * 128, "dots.not.allowed"])
async def test_invalid_names_are_rejected(secret_store: SecretStore, name: str) -> None:
    with pytest.raises(ValueError):
        await secret_store.get(name)


# -- Key Vault specifics: challenge flow, cache, errors ---------------------------------------------


async def test_key_vault_uses_the_challenge_flow_and_the_vault_scope(vault: FakeVault) -> None:
    credential = StubCredential()
    store = _key_vault_store(vault, credential)
    try:
        assert await store.get("openai-api-key") == "sk-live-123"
    finally:
        await store.close()
    assert credential.scopes == [("https://vault.azure.net/.default",)]


async def test_values_are_cached_until_the_ttl_expires(vault: FakeVault) -> None:
    clock = Clock()
    store = _key_vault_store(vault, ttl=60, clock=clock)
    try:
        assert await store.get("openai-api-key") == "sk-live-123"
        vault.secrets["openai-api-key"] = "sk-rotated"
        clock.now += 59
        assert await store.get("openai-api-key") == "sk-live-123"
        assert vault.reads == ["openai-api-key"]
        clock.now += 2
        assert await store.get("openai-api-key") == "sk-rotated"
        assert vault.reads == ["openai-api-key", "openai-api-key"]
        vault.secrets["openai-api-key"] = "sk-rotated-again"
        store.invalidate("openai-api-key")
        assert await store.get("openai-api-key") == "sk-rotated-again"
    finally:
        await store.close()


async def test_concurrent_reads_of_one_secret_share_one_request(vault: FakeVault) -> None:
    vault.delay = 0.05
    store = _key_vault_store(vault)
    try:
        values = await asyncio.gather(*(store.get("db-password") for _ in range(10)))
    finally:
        await store.close()
    assert values == ["p@ss;word="] * 10
    assert vault.reads == ["db-password"]


async def test_misses_are_not_cached(vault: FakeVault) -> None:
    store = _key_vault_store(vault)
    try:
        with pytest.raises(UnresolvedReference, match="was not found in Key Vault"):
            await store.get("added-later")
        vault.secrets["added-later"] = "now-here"
        assert await store.get("added-later") == "now-here"
    finally:
        await store.close()


@pytest.mark.parametrize("status, words", [(403, "not authorized"), (500, "HTTP 500")])
async def test_service_errors_never_echo_the_response(vault: FakeVault, status: int, words: str) -> None:
    vault.failures["openai-api-key"] = status
    store = _key_vault_store(vault, retry_total=0)
    try:
        with pytest.raises(UnresolvedReference) as raised:
            await store.get("openai-api-key")
    finally:
        await store.close()
    message = str(raised.value)
    assert "${secret:openai-api-key}" in message and words in message and vault.url in message
    assert SECRETS["db-password"] not in message


async def test_an_unreachable_vault_is_an_unresolved_reference() -> None:
    store = KeyVaultSecretStore("https://127.0.0.1:9", StubCredential(), verify_challenge_resource=False,
                                retry_total=0)
    try:
        with pytest.raises(UnresolvedReference, match=r"\$\{secret:openai-api-key\} could not be read"):
            await store.get("openai-api-key")
    finally:
        await store.close()
