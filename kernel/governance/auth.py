"""Who may call the HTTP API: Entra ID bearer tokens with app roles, checked in our code.

In Azure the apps can take Microsoft Entra ID access tokens: each request's ``Authorization:
Bearer`` token is validated here — signature against the tenant's published keys (JWKS, fetched
and cached by PyJWT's ``PyJWKClient``, refetched when a token names a key not seen yet), issuer,
audience, expiry and not-before (with a small leeway for clock skew) — and the token's ``roles``
claim must grant what the route needs. Roles nest: ``admin`` ⊇ ``operator`` ⊇ ``reader``.

* ``reader``: list and read (agents, turns, memory, dead letters, approvals, MCP servers)
* ``operator``: also send events, pause and resume, answer approvals, call tools as an agent
* ``admin``: also retire agents, sync configs, read and verify the audit log

App role values may be written ``reader`` or ``AOS.Reader`` (case does not matter), the way app
registrations usually name them. Nothing about a token — not the token, not its claims beyond
subject and name — is ever put into an error message or a log line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jwt

ROLES = ("reader", "operator", "admin")
_RANK = {role: rank for rank, role in enumerate(ROLES)}
ALGORITHMS = ("RS256",)


class Unauthorized(Exception):
    """No usable credential: 401. The message says what was wrong, never what the token held."""


class Forbidden(Exception):
    """A valid caller without the role the route needs: 403."""


@dataclass(frozen=True)
class Principal:
    """The caller: who, with which roles, and how they proved it."""

    subject: str
    name: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    via: str = "token"  # "token" or "key"
    #: every value of the token's ``roles`` and ``groups`` claims, for namespace access (kernel.governance.access)
    claim_roles: frozenset[str] = field(default_factory=frozenset, compare=False)
    groups: frozenset[str] = field(default_factory=frozenset, compare=False)

    def has(self, role: str) -> bool:
        """Whether any of the caller's roles is ``role`` or above it."""
        need = _RANK[role]
        return any(_RANK[held] >= need for held in self.roles)

    def require(self, role: str) -> None:
        if not self.has(role):
            held = ", ".join(sorted(self.roles)) or "none"
            raise Forbidden(f"this needs the '{role}' role; the caller has: {held}")


def _strings(value: Any) -> frozenset[str]:
    return frozenset(item for item in value if isinstance(item, str)) if isinstance(value, list) else frozenset()


def role_names(values: Iterable[Any]) -> frozenset[str]:
    """Our roles among a token's ``roles`` claim (``AOS.Operator`` → ``operator``; others ignored)."""
    found = set()
    for value in values:
        if not isinstance(value, str):
            continue
        name = value.strip().lower().removeprefix("aos.")
        if name in _RANK:
            found.add(name)
    return frozenset(found)


@dataclass(frozen=True)
class TokenSettings:
    audiences: Sequence[str]
    issuers: Sequence[str]
    jwks_url: str
    leeway_seconds: int = 60

    @classmethod
    def for_tenant(cls, tenant_id: str, audiences: Sequence[str], *, jwks_url: str | None = None,
                   issuers: Sequence[str] | None = None) -> TokenSettings:
        """Entra ID defaults for a tenant: v1 and v2 issuers, the tenant's v2 keys."""
        return cls(
            audiences=list(audiences),
            issuers=list(issuers or (f"https://login.microsoftonline.com/{tenant_id}/v2.0",
                                     f"https://sts.windows.net/{tenant_id}/")),
            jwks_url=jwks_url or f"https://login.microsoftonline.com/{tenant_id}/discovery/v2.0/keys",
        )


class TokenValidator:
    """Validates bearer tokens against one tenant's keys; safe to share across requests."""

    def __init__(self, settings: TokenSettings) -> None:
        if not settings.audiences:
            raise ValueError("token validation needs at least one audience")
        self.settings = settings
        self._keys = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=3600, timeout=10)

    async def principal(self, authorization: str | None) -> Principal:
        """The caller behind an ``Authorization`` header value; :class:`Unauthorized` otherwise."""
        if not authorization:
            raise Unauthorized("no credentials: send 'Authorization: Bearer <token>'")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("the Authorization header must be 'Bearer <token>'")
        claims = await asyncio.to_thread(self._decode, token.strip())
        return Principal(subject=str(claims.get("oid") or claims.get("sub") or "unknown"),
                         name=claims.get("preferred_username") or claims.get("name") or claims.get("appid"),
                         roles=role_names(claims.get("roles") or []), via="token",
                         claim_roles=_strings(claims.get("roles")), groups=_strings(claims.get("groups")))

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            key = self._keys.get_signing_key_from_jwt(token)
        except jwt.PyJWKClientConnectionError:
            raise Unauthorized("the signing keys could not be fetched; try again") from None
        except (jwt.PyJWKClientError, jwt.DecodeError):
            raise Unauthorized("the token is malformed or signed with an unknown key") from None
        try:
            return jwt.decode(
                token, key.key, algorithms=list(ALGORITHMS), audience=list(self.settings.audiences),
                issuer=list(self.settings.issuers), leeway=self.settings.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise Unauthorized("the token was issued by another tenant or issuer") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as missing:
            raise Unauthorized(f"the token has no '{missing.claim}' claim") from None
        except jwt.InvalidTokenError as error:
            raise Unauthorized(f"the token is not valid ({type(error).__name__})") from None
