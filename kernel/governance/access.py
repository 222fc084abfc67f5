"""The role each HTTP route needs, enforced before its handler runs.

``AOS_AUTH=keys`` (the default): the Functions host — or the embedded engine, which checks the
same keys — lets only callers with a function or master key through, and a key holder may do
everything, as on any Function App. ``AOS_AUTH=entra``: the routes are anonymous to the host and
every request must carry an Entra ID bearer token (``kernel.governance.auth``) whose app roles
include what the route needs; otherwise 401 (no or bad token, with ``WWW-Authenticate``) or 403
(valid token, missing role), as JSON errors that never echo the token.

Handlers declare their need with ``@requires("reader" | "operator" | "admin")`` under the
route decorator; the wrapper keeps the handler's signature, so the Functions worker binds the
same parameters.

Namespaces (``kernel.namespaces``): handlers that list or act on agents, turns or audit chains
ask :func:`sees` whether the caller may see an address. A key holder sees every namespace; a
token's caller sees a namespace whose document lists ``access.roles`` or ``access.groups`` only
when the token carries one of them (its ``roles`` or ``groups`` claim), and a namespace without
access rules (the default one, unless declared with some) like before namespaces existed.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import azure.functions as func

from kernel import namespaces as ns
from kernel import settings
from kernel.governance.auth import ROLES, Forbidden, Principal, TokenSettings, TokenValidator, Unauthorized

KEY_HOLDER = Principal(subject="function-key", roles=frozenset({"admin"}), via="key")
Handler = TypeVar("Handler", bound=Callable[..., Any])
_validators: dict[tuple[Any, ...], TokenValidator] = {}
#: The caller of the HTTP request being handled (set by ``@requires``), for audit records.
_current: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("aos_caller", default=None)


def mode(environ: Mapping[str, str] | None = None) -> str:
    value = settings.get("AOS_AUTH", environ).strip().lower() or "keys"
    if value not in ("keys", "entra"):
        raise ValueError(f"AOS_AUTH must be 'keys' or 'entra', not '{value}'")
    return value


def http_auth_level(environ: Mapping[str, str] | None = None) -> func.AuthLevel:
    """What the host checks: function keys, or nothing (tokens are checked here) with Entra."""
    return func.AuthLevel.ANONYMOUS if mode(environ) == "entra" else func.AuthLevel.FUNCTION


def validator(environ: Mapping[str, str] | None = None) -> TokenValidator:
    """The token validator for the current settings (one per distinct configuration)."""
    tenant = settings.get("AOS_AUTH_TENANT_ID", environ).strip()
    audiences = [a.strip() for a in settings.get("AOS_AUTH_AUDIENCE", environ).split(",") if a.strip()]
    if not tenant or not audiences:
        raise ValueError("AOS_AUTH=entra needs AOS_AUTH_TENANT_ID and AOS_AUTH_AUDIENCE")
    jwks = settings.get("AOS_AUTH_JWKS_URL", environ).strip() or None
    key = (tenant, tuple(audiences), jwks)
    found = _validators.get(key)
    if found is None:
        found = _validators[key] = TokenValidator(TokenSettings.for_tenant(tenant, audiences, jwks_url=jwks))
    return found


async def caller(req: func.HttpRequest, environ: Mapping[str, str] | None = None) -> Principal:
    """Who is calling (:class:`Unauthorized` when they cannot say)."""
    if mode(environ) == "keys":
        return KEY_HOLDER
    return await validator(environ).principal(req.headers.get("Authorization"))


def requires(role: str) -> Callable[[Handler], Handler]:
    """Refuse the request unless the caller holds ``role`` (or a role above it)."""
    if role not in ROLES:
        raise ValueError(f"unknown role '{role}': expected one of {', '.join(ROLES)}")

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def guarded(*args: Any, **kwargs: Any) -> func.HttpResponse:
            req = next(v for v in (*args, *kwargs.values()) if isinstance(v, func.HttpRequest))
            try:
                principal = await caller(req)
                principal.require(role)
            except Unauthorized as error:
                return _refuse(401, str(error), {"WWW-Authenticate": 'Bearer error="invalid_token"'})
            except Forbidden as error:
                return _refuse(403, str(error), {})
            except ValueError as error:  # misconfigured auth settings: say so, refuse
                return _refuse(500, f"authentication is misconfigured: {error}", {})
            token = _current.set(principal)
            try:
                result = handler(*args, **kwargs)
                return await result if inspect.isawaitable(result) else result
            finally:
                _current.reset(token)

        return guarded  # type: ignore[return-value]

    return decorate


def acting() -> str:
    """Who is acting, for audit records: ``user:<name or object id>`` for a token's caller,
    ``function-key`` for a key holder (keys name no one), ``system`` outside a request."""
    principal = _current.get()
    if principal is None:
        return "system"
    if principal.via == "key":
        return "function-key"
    return f"user:{principal.name or principal.subject}"[:200]


def allowed_namespaces(documents: Mapping[str, Any]) -> frozenset[str] | None:
    """The namespaces the current caller may see (``None``: all of them — key holders, system work).
    ``documents``: the namespace documents by name (``ConfigSet.namespaces``)."""
    principal = _current.get()
    if principal is None or principal.via == "key":
        return None
    roles = {role.lower() for role in principal.claim_roles}
    allowed = set()
    for name in {ns.DEFAULT} | set(documents):
        access = getattr(documents.get(name), "access", None)
        if access is None or not (access.roles or access.groups) \
                or roles & {role.lower() for role in access.roles} or principal.groups & set(access.groups):
            allowed.add(name)
    return frozenset(allowed)


def sees(address: str, documents: Mapping[str, Any]) -> bool:
    """Whether the current caller may see the agent (or chain) at ``address``."""
    return ns.visible(allowed_namespaces(documents), address)


def _refuse(status: int, message: str, headers: dict[str, str]) -> func.HttpResponse:
    return func.HttpResponse(json.dumps({"error": message}), status_code=status, mimetype="application/json",
                             headers=headers)
