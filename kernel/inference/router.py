"""The inference router: every model call of an agent goes to its endpoint, through one path.

    request (agent, endpoint id, adapter, messages, tools, parameters)
      -> the endpoint: the one the agent names, or the app settings' default endpoint;
         none, or a disabled one -> the offline provider, labelled (``note`` says why)
      -> the model: the adapter's name if the endpoint serves it, else the base model (fallback,
         recorded on the completion, unless the endpoint forbids it)
      -> the response cache (a hit costs no tokens and calls nobody)
      -> the circuit breaker (an endpoint that keeps failing fails fast)
      -> the endpoint's bounded pool (at most ``concurrency`` requests in flight per process)
      -> the OpenAI-compatible provider (retries with back-off, honouring Retry-After)
         a "model not found" answer for the adapter -> the base model, once, recorded
      -> token usage recorded per agent, day, endpoint and adapter

One router per event loop (``realm_of_agents.services``): its pools are asyncio semaphores, which
belong to a loop, and so do its discovery caches. Circuit breakers are process-wide
(:mod:`kernel.inference.breaker`). Endpoint documents are read at every call, so a changed
endpoint config applies to the next call.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from kernel.config.models import InferenceEndpointConfig
from kernel.config.references import MalformedReference, UnresolvedReference
from kernel.inference import offline
from kernel.governance import secret_values
from kernel.inference.auth import TokenProvider, entra_token_provider, resolve_references
from kernel.inference.breaker import breaker_for
from kernel.inference.cache import ResponseCache, cache_key
from kernel.inference.endpoints import EndpointSpec
from kernel.inference.openai_compatible import OpenAICompatibleProvider
from kernel.inference.port import (
    ChatRequest,
    Completion,
    InferenceError,
    InferenceTimeout,
    InferenceUnavailable,
    Usage,
)
from kernel.inference.usage import UsageLedger
from kernel.ports import SecretStore, TableStore

log = logging.getLogger("aos.inference")
NAME = "router"
_NOT_FOUND = re.compile(r"not found|does not exist|no such model|unknown model|not served|deploymentnotfound",
                        re.IGNORECASE)

EndpointSource = Callable[[], Mapping[str, InferenceEndpointConfig]]


class InferenceRouter:
    """``complete(request)`` for any agent; see the module docstring for the path a call takes."""

    name = NAME

    def __init__(self, *, environ: Mapping[str, str], endpoints: EndpointSource, secrets: SecretStore | None = None,
                 tables: TableStore | None = None,
                 token_provider: Callable[[str, str | None], TokenProvider] = entra_token_provider) -> None:
        self._environ = environ
        self._endpoints = endpoints
        self._secrets = secrets
        self._cache = ResponseCache(tables) if tables is not None else None
        self._usage = UsageLedger(tables) if tables is not None else None
        self._token_provider = token_provider
        self._pools: dict[tuple[Any, ...], asyncio.Semaphore] = {}
        self._discovered: dict[tuple[str, ...], tuple[float, frozenset[str]]] = {}
        self._missing: dict[tuple[Any, ...], tuple[float, str]] = {}

    # -- which endpoint ------------------------------------------------------------------------

    def endpoint(self, endpoint_id: str | None) -> tuple[EndpointSpec | None, str]:
        """The endpoint a call naming ``endpoint_id`` goes to, or ``None`` and why the offline provider answers."""
        if endpoint_id is None:
            spec = EndpointSpec.from_settings(self._environ)
            if spec is None:
                return None, "no inference endpoint is configured (AOS_INFERENCE_ENDPOINT is empty)"
            return spec, ""
        config = self._endpoints().get(endpoint_id)
        if config is None:
            raise InferenceError(f"inference endpoint '{endpoint_id}' is not declared (no inference_endpoint "
                                 "document has that id)")
        if not config.enabled:
            return None, f"inference endpoint '{endpoint_id}' is disabled (enabled: false)"
        return EndpointSpec.from_config(config), ""

    def uses_model(self, endpoint_id: str | None) -> bool:
        """Whether calls naming ``endpoint_id`` reach a model (False: the offline provider answers)."""
        try:
            return self.endpoint(endpoint_id)[0] is not None
        except (InferenceError, ValueError):
            return True  # the call itself will report what is wrong

    def health(self, endpoint_id: str | None) -> dict[str, Any]:
        """What readiness reports about where calls naming ``endpoint_id`` go: the offline provider
        (labelled, with why), or the endpoint (type, host, base model: never a key, path or query) and
        its circuit breaker's state, failure streak and last error."""
        spec, why_offline = self.endpoint(endpoint_id)
        if spec is None:
            return {"endpoint": endpoint_id, "provider": offline.NAME, "offline": True, "note": f"offline: {why_offline}"}
        breaker = breaker_for(spec.key_tuple, spec.label, failure_threshold=spec.failure_threshold,
                              cooldown_seconds=spec.cooldown_seconds)
        return {"endpoint": spec.id, "provider": spec.type, "offline": False, **spec.describe(),
                "circuit": breaker.snapshot()}

    # -- the port ------------------------------------------------------------------------------

    async def complete(self, request: ChatRequest) -> Completion:
        spec, why_offline = self.endpoint(request.endpoint)
        if spec is None:
            answer = offline.complete(replace(request, model=request.model or request.adapter))
            completion = replace(answer, endpoint=request.endpoint, adapter=request.adapter, attempts=0,
                                 note=f"offline: {why_offline}")
            await self._record(request, completion)
            return completion

        model, fallback = await self._choose_model(spec, request)
        sent = replace(request, model=model, response_format=_response_format(spec, request.response_format))
        key = None
        if self._cache is not None and spec.cache_enabled and (request.temperature == 0 or spec.cache_sampled):
            key = cache_key(spec.id, spec.url, sent)
            hit = await self._cache.get(spec.id, key)
            if hit is not None:
                return await self._cached(request, spec, fallback, *hit)

        breaker = breaker_for(spec.key_tuple, spec.label, failure_threshold=spec.failure_threshold,
                              cooldown_seconds=spec.cooldown_seconds)
        trial = breaker.before_call()  # before queueing for a slot: an open breaker fails at once
        settled = False
        try:
            async with self._pool(spec):
                provider = await self._provider(spec)
                try:
                    completion = await provider.complete(sent)
                except InferenceError as error:
                    reason = self._not_served(spec, request, model, error)
                    if reason is None:
                        raise
                    fallback = self._fall_back(spec, request.adapter or "", reason, remember=True)
                    sent = replace(sent, model=spec.base_model)
                    key = cache_key(spec.id, spec.url, sent) if key is not None else None
                    completion = await provider.complete(sent)
        except (InferenceUnavailable, InferenceTimeout) as error:
            breaker.failure(error, trial)
            settled = True
            raise
        except InferenceError as error:
            if error.status is not None:  # the endpoint answered: it is up
                breaker.success(trial)
                settled = True
            raise
        else:
            breaker.success(trial)
            settled = True
        finally:
            if not settled:
                breaker.release(trial)

        completion = replace(completion, endpoint=spec.id, adapter=request.adapter, fallback=fallback)
        if key is not None:
            await self._cache.put(spec.id, key, completion, spec.cache_ttl_seconds)  # type: ignore[union-attr]
        await self._record(request, completion)
        return completion

    async def close(self) -> None:
        """Nothing to release: providers open a client per call."""
        return None

    # -- adapters ------------------------------------------------------------------------------

    async def _choose_model(self, spec: EndpointSpec, request: ChatRequest) -> tuple[str, dict[str, Any] | None]:
        """The model to send and, when the adapter is not served, the fallback record."""
        if request.model:
            return request.model, None
        adapter = request.adapter
        if not adapter:
            return spec.base_model, None
        missing = self._missing.get((spec.key_tuple, adapter))
        if missing is not None and missing[0] > time.monotonic():
            return spec.base_model, self._fall_back(spec, adapter, missing[1])
        if spec.on_demand or adapter in spec.served:
            return adapter, None
        if spec.discover:
            listed = await self._listed_models(spec)
            if listed is None or adapter in listed:  # unknown: try it; a not-found answer falls back
                return adapter, None
            return spec.base_model, self._fall_back(
                spec, adapter, f"adapter '{adapter}' is not among the models inference endpoint '{spec.id}' lists "
                               "(GET /models)")
        return spec.base_model, self._fall_back(
            spec, adapter, f"adapter '{adapter}' is not among the adapters inference endpoint '{spec.id}' serves "
                           "(adapters.served)")

    def _fall_back(self, spec: EndpointSpec, adapter: str, reason: str, *, remember: bool = False) -> dict[str, Any]:
        if not spec.fallback or not spec.base_model:
            why = "adapters.fallback is false" if spec.base_model else "no base model is configured"
            raise InferenceError(f"{reason}; not answered by the base model instead: {why}")
        if remember:
            until = time.monotonic() + spec.discover_ttl_seconds
            at = datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
            self._missing[(spec.key_tuple, adapter)] = (
                until, f"{reason} (at {at}; asked again after {spec.discover_ttl_seconds:g} s)")
        return {"adapter": adapter, "fallback": "base model", "model": spec.base_model, "reason": reason}

    def _not_served(self, spec: EndpointSpec, request: ChatRequest, model: str, error: InferenceError) -> str | None:
        """The reason to fall back, when ``error`` says the adapter's model does not exist there."""
        if not request.adapter or request.model or model != request.adapter or model == spec.base_model:
            return None
        if error.status == 404 or (error.status in (400, 422) and _NOT_FOUND.search(str(error))):
            return f"inference endpoint '{spec.id}' answered that adapter '{model}' does not exist: {error}"
        return None

    async def _listed_models(self, spec: EndpointSpec) -> frozenset[str] | None:
        """The endpoint's model list (cached for ``discover_ttl_seconds``); ``None`` if it cannot be had."""
        cached = self._discovered.get(spec.key_tuple)
        now = time.monotonic()
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            listed = frozenset(await (await self._provider(spec)).list_models())
        except InferenceError as error:
            log.warning("inference endpoint %s did not list its models (%s); sending the adapter's name", spec.label,
                        error)
            return None
        self._discovered[spec.key_tuple] = (now + spec.discover_ttl_seconds, listed)
        return listed

    # -- plumbing ------------------------------------------------------------------------------

    def _pool(self, spec: EndpointSpec) -> asyncio.Semaphore:
        key = (*spec.key_tuple, spec.concurrency)
        pool = self._pools.get(key)
        if pool is None:
            pool = self._pools[key] = asyncio.Semaphore(spec.concurrency)
        return pool

    async def _provider(self, spec: EndpointSpec) -> OpenAICompatibleProvider:
        """A provider with the endpoint's references resolved now (errors name references, never values)."""
        try:
            url = await resolve_references(spec.url, self._environ, self._secrets)
            key = await resolve_references(spec.key, self._environ, self._secrets) if spec.auth == "key" and spec.key \
                else None
        except (UnresolvedReference, MalformedReference) as error:
            raise InferenceError(f"inference endpoint '{spec.id}': {error}") from None
        if spec.auth == "key" and not key:
            raise InferenceError(f"inference endpoint '{spec.id}': its key reference {spec.key} is empty")
        secret_values.remember(key)
        token = self._token_provider(spec.scope or "", spec.client_id) if spec.auth == "entra" else None
        try:
            return OpenAICompatibleProvider(url, api_key=key, default_model=spec.base_model,
                                            timeout=spec.timeout_seconds, key_header=spec.key_header,  # type: ignore[arg-type]
                                            token_provider=token, headers=spec.headers,
                                            api_version=spec.api_version, retry=spec.retry)
        except ValueError as error:
            raise InferenceError(f"inference endpoint '{spec.id}': {error}") from None

    async def _cached(self, request: ChatRequest, spec: EndpointSpec, fallback: dict[str, Any] | None,
                      stored: Completion, at: datetime) -> Completion:
        saved = (stored.usage.prompt_tokens, stored.usage.completion_tokens)
        completion = replace(stored, usage=Usage(0, 0), endpoint=spec.id, adapter=request.adapter,
                             fallback=fallback or stored.fallback, cached=True, attempts=0,
                             note=f"cached answer from {at.isoformat(timespec='seconds')}; saved {saved[0]} prompt "
                                  f"and {saved[1]} completion tokens")
        await self._record(request, completion, saved=saved)
        return completion

    async def _record(self, request: ChatRequest, completion: Completion, saved: tuple[int, int] = (0, 0)) -> None:
        if self._usage is not None:
            await self._usage.record(request.agent_id, completion, saved=saved)


def _response_format(spec: EndpointSpec, wanted: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the endpoint is sent: nothing unless it supports structured output; LoRAX's own shape for LoRAX."""
    if not wanted or not spec.structured_output:
        return None
    if spec.type == "lorax" and wanted.get("type") == "json_schema":
        return {"type": "json_object", "schema": (wanted.get("json_schema") or {}).get("schema", {})}
    return wanted
