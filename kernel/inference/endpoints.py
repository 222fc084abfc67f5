"""The endpoints a model call can go to, as plain runtime data.

Two sources, one shape (:class:`EndpointSpec`):

* ``inference_endpoint`` documents (``kernel.config.models.InferenceEndpointConfig``), which agents
  name in ``model.endpoint``;
* the app settings' **default endpoint** (``AOS_INFERENCE_ENDPOINT``, ``AOS_INFERENCE_MODEL``,
  ``AOS_INFERENCE_API_KEY``, ``AOS_INFERENCE_TIMEOUT_SECONDS``), id ``default``, for agents that
  name none. It keeps the behaviour it always had: one attempt per call (the activity retry owns
  retries), the agent's adapter name always sent as the model (falling back to
  ``AOS_INFERENCE_MODEL`` only when the server answers that it does not exist), no structured
  output. Its breaker, cache and pool use the defaults of an endpoint document. Declare a document
  to tune any of that.

With ``AOS_INFERENCE_ENDPOINT`` empty there is no default endpoint: agents that name none are
answered by the offline provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kernel import settings
from kernel.config.models import (
    DEFAULT_ENTRA_SCOPES,
    CircuitBreakerSettings,
    InferenceEndpointConfig,
    ResponseCacheSettings,
)
from kernel.config.references import MalformedReference, find_references
from kernel.inference.openai_compatible import endpoint_host
from kernel.inference.retry import NO_RETRY, RetryPolicy

DEFAULT_ENDPOINT = "default"
_BREAKER = CircuitBreakerSettings()
_CACHE = ResponseCacheSettings()


class InferenceSettingsError(ValueError):
    """The inference app settings are unusable; the message says which and how to fix it, never a value."""


@dataclass(frozen=True)
class EndpointSpec:
    id: str
    type: str
    url: str  # may hold references, resolved at each call
    base_model: str
    source: str = "config"  # or "settings"
    enabled: bool = True
    auth: str = "none"  # none | key | entra
    key: str | None = None  # a reference, never a value
    key_header: str = "authorization"
    scope: str | None = None
    client_id: str | None = None
    api_version: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    served: frozenset[str] = frozenset()
    discover: bool = False
    discover_ttl_seconds: float = 300.0
    on_demand: bool = False
    fallback: bool = True
    timeout_seconds: float = 60.0
    retry: RetryPolicy = NO_RETRY
    failure_threshold: int = _BREAKER.failure_threshold
    cooldown_seconds: float = _BREAKER.cooldown_seconds
    cache_enabled: bool = _CACHE.enabled
    cache_ttl_seconds: int = _CACHE.ttl_seconds
    cache_sampled: bool = _CACHE.sampled
    concurrency: int = 8
    structured_output: bool = False

    @property
    def host(self) -> str:
        """``host[:port]`` for messages and health; the reference itself when the URL is one."""
        return self.url if self.url.startswith("${") else endpoint_host(self.url)

    @property
    def label(self) -> str:
        return f"'{self.id}' ({self.host})"

    @property
    def key_tuple(self) -> tuple[str, ...]:
        """Identifies the endpoint's runtime state (breaker, discovery): a changed URL starts afresh."""
        return (self.source, self.id, self.url)

    @classmethod
    def from_config(cls, config: InferenceEndpointConfig) -> EndpointSpec:
        auth, retries = config.auth, config.retries
        return cls(
            id=config.id, type=config.type, url=config.url, base_model=config.base_model, enabled=config.enabled,
            auth=auth.type, key=auth.key, key_header=auth.header,
            scope=auth.scope or DEFAULT_ENTRA_SCOPES.get(config.type), client_id=auth.client_id,
            api_version=config.api_version, headers=dict(config.headers),
            served=frozenset(config.adapters.served), discover=config.adapters.discover,
            discover_ttl_seconds=float(config.adapters.discover_ttl_seconds), on_demand=config.adapters.on_demand,
            fallback=config.adapters.fallback, timeout_seconds=config.timeout_seconds,
            retry=RetryPolicy(retries.max_attempts, retries.backoff_seconds, retries.max_backoff_seconds,
                              retries.max_retry_after_seconds),
            failure_threshold=config.circuit_breaker.failure_threshold,
            cooldown_seconds=config.circuit_breaker.cooldown_seconds,
            cache_enabled=config.cache.enabled, cache_ttl_seconds=config.cache.ttl_seconds,
            cache_sampled=config.cache.sampled, concurrency=config.concurrency,
            structured_output=config.structured_output,
        )

    @classmethod
    def from_settings(cls, environ: Mapping[str, str]) -> EndpointSpec | None:
        """The default endpoint of the app settings, or ``None`` when ``AOS_INFERENCE_ENDPOINT`` is empty."""
        url = settings.get("AOS_INFERENCE_ENDPOINT", environ).strip()
        if not url:
            return None
        if endpoint_host(url).startswith("<"):
            raise InferenceSettingsError(
                "AOS_INFERENCE_ENDPOINT is not a URL: expected a base URL such as "
                "https://<resource>.openai.azure.com/openai/v1/ or http://localhost:11434/v1"
            )
        key = settings_key_reference(settings.get("AOS_INFERENCE_API_KEY", environ))
        return cls(
            id=DEFAULT_ENDPOINT, type="openai_compatible", url=url, source="settings",
            base_model=settings.get("AOS_INFERENCE_MODEL", environ).strip(),
            auth="key" if key else "none", key=key,
            timeout_seconds=settings_timeout(settings.get("AOS_INFERENCE_TIMEOUT_SECONDS", environ)),
            on_demand=True,
        )

    def describe(self) -> dict[str, Any]:
        """What health output shows: never a key, a path or a query."""
        return {"type": self.type, "host": self.host, "enabled": self.enabled, "base_model": self.base_model,
                "auth": self.auth, "adapters": sorted(self.served), "discover": self.discover,
                "on_demand": self.on_demand, "concurrency": self.concurrency}


def settings_key_reference(raw: str) -> str | None:
    """``AOS_INFERENCE_API_KEY``: empty, or exactly one reference (a literal key is refused unquoted)."""
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
    return text


def settings_timeout(raw: str) -> float:
    try:
        seconds = float(raw)
    except ValueError:
        raise InferenceSettingsError(
            f"AOS_INFERENCE_TIMEOUT_SECONDS must be a number of seconds, not '{raw}'"
        ) from None
    if not seconds > 0:
        raise InferenceSettingsError(f"AOS_INFERENCE_TIMEOUT_SECONDS must be positive, not '{raw}'")
    return seconds
