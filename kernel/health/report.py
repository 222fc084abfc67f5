"""Readiness checks run together, each under a timeout, and the verdict they add up to.

A check answers ``ok``, ``degraded`` or ``failed``. A *required* check (storage, the bus) is one
the app cannot work without: if it is not ``ok`` the app is not ready (``failed``, HTTP 503). An
optional one (a model endpoint, an MCP server) failing leaves the app ready but ``degraded``
(HTTP 200): agents keep working, and a tool or model error goes back to the model or the turn.

Nothing secret leaves this module: every error message goes through :func:`scrub`, which masks
``key=value`` secrets of connection strings, the values of secret-looking app settings, user
info and query strings of URLs (SAS tokens), and any value the caller knows is secret.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kernel.adapters import redact as redact_connection_secrets
from kernel.governance import secret_values as secret_masking
from kernel.governance.redaction import DEFAULT_RULES, mask

OK, DEGRADED, FAILED = "ok", "degraded", "failed"
STATUSES = (OK, DEGRADED, FAILED)
_RANK = {OK: 0, DEGRADED: 1, FAILED: 2}
#: Setting names whose values are masked wherever they appear (beside the default redaction keys).
_SECRET_SETTING = DEFAULT_RULES.with_patterns(r"key", r"connection", r"sas", r"signature", r"AzureWebJobsStorage$")
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@'\"]+@")
_URL_QUERY = re.compile(r"(?i)(\b[a-z][a-z0-9+.-]*://[^\s?'\"]*)\?[^\s'\"]*")
_MESSAGE_LIMIT = 300


@dataclass
class Outcome:
    """What a check found: its status, a short error code or class, a message and details."""

    status: str = OK
    error: str | None = None
    message: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Check:
    """One dependency to check: ``run`` returns an :class:`Outcome` or raises (which is ``failed``)."""

    name: str
    kind: str
    required: bool
    run: Callable[[], Awaitable[Outcome]]


@dataclass(frozen=True)
class CheckResult:
    name: str
    kind: str
    required: bool
    status: str
    latency_ms: float
    error: str | None
    message: str | None
    detail: Mapping[str, Any]

    def summary(self) -> dict[str, Any]:
        """What anyone may see: name, kind, required, status, latency and the error's class or code."""
        return {"name": self.name, "kind": self.kind, "required": self.required, "status": self.status,
                "latency_ms": self.latency_ms, "error": self.error}

    def full(self) -> dict[str, Any]:
        """The summary plus the (scrubbed) message and details, for reader+ callers."""
        return {**self.summary(), "message": self.message, "detail": dict(self.detail)}


def secret_values(environ: Mapping[str, str]) -> list[str]:
    """Values of app settings whose names look secret (keys, connection strings, tokens, passwords).

    Identity-based connection parts (``ServiceBusConnection__fullyQualifiedNamespace``) and URLs
    are not secrets, and a message that names the host it could not reach is worth reading.
    """
    return [value for name, value in environ.items()
            if isinstance(value, str) and len(value) >= 8 and _SECRET_SETTING.sensitive(name)
            and "__" not in name and not name.endswith("_URL")]  # identity-based parts and URLs name, not hide


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """``text`` fit for a health answer: known secrets masked, connection-string secrets, URL user
    info and query strings removed, one line, at most 300 characters."""
    cleaned = secret_masking.mask_known(mask(str(text), secrets))  # settings' secrets and resolved ones
    cleaned = redact_connection_secrets(cleaned)
    cleaned = _URL_USERINFO.sub(r"\1***@", cleaned)
    cleaned = _URL_QUERY.sub(r"\1?***", cleaned)
    cleaned = " ".join(cleaned.split())
    return cleaned if len(cleaned) <= _MESSAGE_LIMIT else cleaned[: _MESSAGE_LIMIT - 1] + "…"


async def run_checks(checks: Sequence[Check], *, timeout: float, secrets: Iterable[str] = ()) -> list[CheckResult]:
    """Run every check at once, each bounded by ``timeout`` seconds; results in the checks' order."""
    known = list(secrets)
    return list(await asyncio.gather(*(_run(check, timeout, known) for check in checks)))


async def _run(check: Check, timeout: float, secrets: list[str]) -> CheckResult:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout):
            outcome = await check.run()
    except TimeoutError:
        outcome = Outcome(FAILED, "Timeout", f"no answer within {timeout:g} s")
    except Exception as error:  # noqa: BLE001 - a failing dependency is the finding, not a crash
        outcome = Outcome(FAILED, type(error).__name__, str(error) or type(error).__name__)
    if outcome.status not in STATUSES:
        raise ValueError(f"check {check.name} answered status {outcome.status!r}: expected one of {STATUSES}")
    latency = round((time.perf_counter() - started) * 1000, 1)
    message = scrub(outcome.message, secrets) if outcome.message else None
    return CheckResult(check.name, check.kind, check.required, outcome.status, latency, outcome.error, message,
                       _scrub_detail(outcome.detail, secrets))


def _scrub_detail(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, Mapping):
        return {key: _scrub_detail(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub_detail(item, secrets) for item in value]
    return scrub(value, secrets) if isinstance(value, str) else value


def verdict(results: Iterable[CheckResult]) -> str:
    """``failed`` when a required check is not ok, else ``degraded`` when any check is not ok, else ``ok``."""
    worst = OK
    for result in results:
        if result.status != OK:
            worst = max(worst, FAILED if result.required else DEGRADED, key=_RANK.__getitem__)
    return worst
