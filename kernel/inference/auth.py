"""Credentials for inference endpoints, obtained at the moment of use and never written anywhere.

* References (``${secret:NAME}``, ``${env:NAME}``) in an endpoint's ``url`` and ``auth.key`` are
  resolved for every call: ``${secret:…}`` through the ``SecretStore`` (Key Vault in Azure, which
  caches values for ``AOS_SECRET_CACHE_SECONDS``; without a store the local stand-in environment
  variable), ``${env:…}`` from the app settings. A rotated key is picked up without a restart.
* Microsoft Entra ID tokens come from azure-identity's synchronous ``DefaultAzureCredential``
  (managed identity in Azure, ``az login`` or environment credentials locally) through
  ``get_bearer_token_provider``, which caches the token and refreshes it before it expires. The
  synchronous credential is thread-safe and bound to no event loop, so one per scope and identity
  serves the whole process; it is asked in a worker thread so a slow token request never blocks
  the loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from kernel.config.references import Reference, environment_lookup, find_references
from kernel.governance import secret_values
from kernel.ports import SecretStore

TokenProvider = Callable[[], Awaitable[str]]


async def resolve_references(text: str, environ: Mapping[str, str], secrets: SecretStore | None) -> str:
    """``text`` with every reference replaced by its value (``UnresolvedReference`` names a missing one)."""
    references = find_references(text)
    if not references:
        return text
    values: dict[Reference, str] = {}
    local = environment_lookup(environ)
    for reference in references:
        if reference not in values:
            if reference.source == "secret" and secrets is not None:
                values[reference] = await secrets.get(reference.name)
            else:
                values[reference] = local(reference)
            if reference.source == "secret":
                secret_values.remember(values[reference])
    for reference, value in values.items():
        text = text.replace(str(reference), value)
    return text


_providers: dict[tuple[str, str | None], TokenProvider] = {}
_lock = threading.Lock()


def entra_token_provider(scope: str, client_id: str | None = None) -> TokenProvider:
    """An async callable returning a bearer token for ``scope`` (one per scope and identity per process).

    Building it contacts nobody: azure-identity looks for credentials at the first token request.
    """
    key = (scope, client_id)
    with _lock:
        found = _providers.get(key)
        if found is None:
            found = _providers[key] = _build(scope, client_id)
    return found


def _build(scope: str, client_id: str | None) -> TokenProvider:
    from azure.identity import DefaultAzureCredential, get_bearer_token_provider

    options: dict[str, Any] = {"managed_identity_client_id": client_id} if client_id else {}
    credential = DefaultAzureCredential(**options)
    sync_provider = get_bearer_token_provider(credential, scope)

    async def token() -> str:
        return await asyncio.to_thread(sync_provider)

    token.credential = credential  # type: ignore[attr-defined]  # for inspection (tests, health)
    token.scope = scope  # type: ignore[attr-defined]
    return token
