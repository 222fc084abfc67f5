"""``KeyVaultSecretStore``: the ``SecretStore`` port on Azure Key Vault, with a small TTL cache.

Values are cached in memory for ``ttl`` seconds (default 300) so that a burst of MCP server
starts does not become a burst of Key Vault reads (Key Vault throttles per vault); concurrent
reads of one name share a single request. Misses and failures are never cached. ``invalidate``
drops a name (or everything), for rotation. Errors become
``kernel.config.references.UnresolvedReference`` naming the secret and the vault, never a value,
and never the SDK's message (which may quote the request).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from kernel.adapters.embedded_secrets import check_secret_name
from kernel.config.references import Reference, UnresolvedReference
from kernel.governance import secret_values


class KeyVaultSecretStore:
    def __init__(self, vault_url: str, credential: Any = None, *, ttl: float = 300.0,
                 clock: Callable[[], float] = time.monotonic, client: Any = None, **client_options: Any) -> None:
        """``client_options`` go to ``SecretClient`` (``connection_verify``, ``verify_challenge_resource``...)."""
        if client is None:
            if credential is None:
                raise ValueError("the Key Vault secret store needs a token credential (DefaultAzureCredential)")
            from azure.keyvault.secrets.aio import SecretClient

            client = SecretClient(vault_url=vault_url, credential=credential, **client_options)
        self.vault_url = vault_url.rstrip("/")
        self._client = client
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[str, tuple[str, float]] = {}
        self._inflight: dict[str, asyncio.Future[str]] = {}

    async def get(self, name: str) -> str:
        check_secret_name(name)
        cached = self._cache.get(name)
        if cached is not None and self._clock() < cached[1]:
            return cached[0]
        pending = self._inflight.get(name)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inflight[name] = future
        try:
            value = await self._fetch(name)
            secret_values.remember(value)
            if self._ttl > 0:
                self._cache[name] = (value, self._clock() + self._ttl)
            future.set_result(value)
            return value
        except asyncio.CancelledError:
            future.cancel()
            raise
        except BaseException as error:
            future.set_exception(error)
            future.exception()  # mark retrieved: waiters (if any) get it through the shield
            raise
        finally:
            del self._inflight[name]

    async def _fetch(self, name: str) -> str:
        from azure.core.exceptions import ClientAuthenticationError, HttpResponseError, ResourceNotFoundError

        reference = Reference("secret", name)
        try:
            secret = await self._client.get_secret(name)
        except ResourceNotFoundError:
            raise UnresolvedReference(f"{reference} was not found in Key Vault {self.vault_url}") from None
        except HttpResponseError as error:
            status = getattr(error, "status_code", None)
            if isinstance(error, ClientAuthenticationError) or status in (401, 403):
                raise UnresolvedReference(
                    f"{reference} could not be read from Key Vault {self.vault_url}: not authorized "
                    f"(HTTP {status or 'n/a'}; check the app's identity and its 'Key Vault Secrets User' role)"
                ) from None
            raise UnresolvedReference(
                f"{reference} could not be read from Key Vault {self.vault_url}: HTTP {status}"
            ) from None
        except Exception as error:  # network errors, credential errors
            raise UnresolvedReference(
                f"{reference} could not be read from Key Vault {self.vault_url}: {type(error).__name__}"
            ) from None
        if secret.value is None:
            raise UnresolvedReference(f"{reference} has no value in Key Vault {self.vault_url}")
        return str(secret.value)

    def invalidate(self, name: str | None = None) -> None:
        """Forget one cached secret, or all of them."""
        if name is None:
            self._cache.clear()
        else:
            self._cache.pop(name, None)

    async def close(self) -> None:
        self._cache.clear()
        await self._client.close()
