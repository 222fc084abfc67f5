"""Which inference provider the app settings select, and what health output says about it.

``AOS_INFERENCE_ENDPOINT`` empty selects the offline provider (labelled ``[offline]``); otherwise
the OpenAI-compatible provider on that base URL. ``AOS_INFERENCE_API_KEY`` is empty (no key sent)
or a reference, ``${secret:NAME}`` or ``${env:NAME}``, resolved here at the moment the provider is
built: a literal key in an app setting would be visible to everyone who can read the app's
configuration, so it is refused. Nothing here ever puts a key value into a message.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernel import settings
from kernel.config.references import MalformedReference, environment_lookup, find_references
from kernel.inference.offline import OfflineProvider
from kernel.inference.openai_compatible import NAME as OPENAI_COMPATIBLE
from kernel.inference.openai_compatible import OpenAICompatibleProvider, endpoint_host
from kernel.inference.port import InferenceProvider
from kernel.ports import SecretStore


class InferenceSettingsError(ValueError):
    """The inference app settings are unusable; the message says which and how to fix it, never a value."""


async def provider_from_settings(environ: Mapping[str, str], secrets: SecretStore | None = None) -> InferenceProvider:
    """The provider the settings in ``environ`` select.

    ``${secret:NAME}`` is read from ``secrets`` (Key Vault in Azure); without a store it falls
    back to the environment variable that stands in for the secret locally (``NAME`` upper-cased,
    hyphens as underscores), as ``EnvironmentSecretStore`` does. ``${env:NAME}`` is read from
    ``environ``.
    """
    endpoint = settings.get("AOS_INFERENCE_ENDPOINT", environ).strip()
    if not endpoint:
        return OfflineProvider()
    if endpoint_host(endpoint).startswith("<"):
        raise InferenceSettingsError(
            "AOS_INFERENCE_ENDPOINT is not a URL: expected a base URL such as "
            "https://<resource>.openai.azure.com/openai/v1/ or http://localhost:11434/v1"
        )
    api_key = await _api_key(settings.get("AOS_INFERENCE_API_KEY", environ), environ, secrets)
    return OpenAICompatibleProvider(
        endpoint,
        api_key=api_key,
        default_model=settings.get("AOS_INFERENCE_MODEL", environ).strip(),
        timeout=_timeout(settings.get("AOS_INFERENCE_TIMEOUT_SECONDS", environ)),
    )


def describe_provider(environ: Mapping[str, str]) -> dict[str, Any]:
    """What health output shows: the provider kind and the endpoint host (never a path, query or key)."""
    endpoint = settings.get("AOS_INFERENCE_ENDPOINT", environ).strip()
    if not endpoint:
        return {"provider": OfflineProvider.name, "endpoint": None}
    return {"provider": OPENAI_COMPATIBLE, "endpoint": endpoint_host(endpoint)}


async def _api_key(raw: str, environ: Mapping[str, str], secrets: SecretStore | None) -> str | None:
    text = raw.strip()
    if not text:
        return None
    try:
        references = find_references(text)
    except MalformedReference:
        # The reference's own message would quote the text, which may be a pasted key.
        raise InferenceSettingsError(
            "AOS_INFERENCE_API_KEY is not a valid reference: expected ${secret:NAME} or ${env:NAME}"
        ) from None
    if not references:
        raise InferenceSettingsError(
            "AOS_INFERENCE_API_KEY holds a literal value; keys are never kept in app settings. Store "
            "the key as a secret (Key Vault, or locally an environment variable) and set "
            "AOS_INFERENCE_API_KEY to its reference: ${secret:NAME} or ${env:NAME}"
        )
    if len(references) != 1 or str(references[0]) != text:
        raise InferenceSettingsError(
            "AOS_INFERENCE_API_KEY must be exactly one reference, ${secret:NAME} or ${env:NAME}, "
            "with nothing around it"
        )
    (reference,) = references
    if reference.source == "secret" and secrets is not None:
        value = await secrets.get(reference.name)
    else:
        value = environment_lookup(environ)(reference)
    if not value:
        raise InferenceSettingsError(f"AOS_INFERENCE_API_KEY refers to {reference}, which is empty")
    return value


def _timeout(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise InferenceSettingsError(
            f"AOS_INFERENCE_TIMEOUT_SECONDS must be a number of seconds, not '{raw}'"
        ) from None
    if not seconds > 0:
        raise InferenceSettingsError(f"AOS_INFERENCE_TIMEOUT_SECONDS must be positive, not '{raw}'")
    return seconds
