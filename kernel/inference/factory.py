"""The providers app settings and configs select, and what health output says about them.

``AOS_INFERENCE_ENDPOINT`` empty means no default endpoint (the offline provider, labelled
``[offline]``, answers agents that name no endpoint); otherwise the OpenAI-compatible provider on
that base URL. ``AOS_INFERENCE_API_KEY`` is empty (no key sent) or a reference, ``${secret:NAME}``
or ``${env:NAME}``, resolved at the moment the provider is built: a literal key in an app setting
would be visible to everyone who can read the app's configuration, so it is refused. Nothing here
ever puts a key value into a message.

``router(...)`` builds the :class:`~kernel.inference.router.InferenceRouter` that serves agents:
the endpoints declared in config plus this default endpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernel.config.references import environment_lookup, find_references
from kernel.governance import secret_values
from kernel.inference.endpoints import EndpointSpec, InferenceSettingsError
from kernel.inference.offline import OfflineProvider
from kernel.inference.openai_compatible import NAME as OPENAI_COMPATIBLE
from kernel.inference.openai_compatible import OpenAICompatibleProvider
from kernel.inference.port import InferenceProvider
from kernel.inference.router import EndpointSource, InferenceRouter
from kernel.ports import SecretStore, TableStore

__all__ = ["InferenceSettingsError", "describe_provider", "provider_from_settings", "router"]


async def provider_from_settings(environ: Mapping[str, str], secrets: SecretStore | None = None) -> InferenceProvider:
    """The provider of the default endpoint in ``environ`` (the offline provider when there is none).

    ``${secret:NAME}`` is read from ``secrets`` (Key Vault in Azure); without a store it falls
    back to the environment variable that stands in for the secret locally (``NAME`` upper-cased,
    hyphens as underscores), as ``EnvironmentSecretStore`` does. ``${env:NAME}`` is read from
    ``environ``.
    """
    spec = EndpointSpec.from_settings(environ)
    if spec is None:
        return OfflineProvider()
    api_key = await _resolve_key(spec.key, environ, secrets) if spec.key else None
    return OpenAICompatibleProvider(spec.url, api_key=api_key, default_model=spec.base_model,
                                    timeout=spec.timeout_seconds)


def router(environ: Mapping[str, str], endpoints: EndpointSource, *, secrets: SecretStore | None = None,
           tables: TableStore | None = None) -> InferenceRouter:
    """The router for agents' model calls. The default endpoint's settings are read at each call that
    uses it, so a broken setting fails those calls only, not the agents on declared endpoints."""
    return InferenceRouter(environ=environ, endpoints=endpoints, secrets=secrets, tables=tables)


def describe_provider(environ: Mapping[str, str], endpoints: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """What health output shows: the default endpoint's provider kind and host, and with ``endpoints``
    (id -> ``InferenceEndpointConfig``) each declared endpoint's type, host and state — never a path,
    query or key."""
    try:
        spec = EndpointSpec.from_settings(environ)
    except InferenceSettingsError as error:
        described: dict[str, Any] = {"provider": "misconfigured", "endpoint": None, "error": str(error)}
    else:
        described = ({"provider": OfflineProvider.name, "endpoint": None} if spec is None
                     else {"provider": OPENAI_COMPATIBLE, "endpoint": spec.host})
    if endpoints is not None:
        described["endpoints"] = {eid: EndpointSpec.from_config(config).describe()
                                  for eid, config in sorted(endpoints.items())}
    return described


async def _resolve_key(reference_text: str, environ: Mapping[str, str], secrets: SecretStore | None) -> str:
    (reference,) = find_references(reference_text)
    if reference.source == "secret" and secrets is not None:
        value = await secrets.get(reference.name)
    else:
        value = environment_lookup(environ)(reference)
    if not value:
        raise InferenceSettingsError(f"AOS_INFERENCE_API_KEY refers to {reference}, which is empty")
    secret_values.remember(value)
    return value
