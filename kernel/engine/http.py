"""HTTP triggers: ASP.NET-style routes, methods, auth levels, ``func.HttpRequest`` in, response out.

Auth levels as on Azure: ANONYMOUS needs no key; FUNCTION accepts a function key or the master
key; ADMIN only the master key. The key comes in the ``x-functions-key`` header or the ``code``
query parameter. Keys come from the settings ``AOS_FUNCTION_KEYS`` (comma separated) and
``AOS_MASTER_KEY``; when no master key is set the host generates one at startup.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping
from urllib.parse import parse_qsl, urlsplit

import azure.functions as func

from .indexing import AppIndex, FunctionSpec
from .invoke import Invocation

log = logging.getLogger("aos.engine.http")

_CONSTRAINTS = {
    "int": r"-?\d+", "long": r"-?\d+", "bool": r"(?i:true|false)", "alpha": r"[A-Za-z]+",
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}",
    "double": r"-?\d+(?:\.\d+)?", "float": r"-?\d+(?:\.\d+)?", "decimal": r"-?\d+(?:\.\d+)?",
}


@dataclass
class HttpResult:
    """What an HTTP trigger answered."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass
class Route:
    spec: FunctionSpec
    pattern: re.Pattern[str]
    methods: frozenset[str] | None
    auth_level: str


def compile_route(template: str) -> re.Pattern[str]:
    """``orders/{id:int}/{rest?}`` -> a regex with named groups (literals match case-insensitively)."""
    parts = []
    for segment in [s for s in template.strip("/").split("/") if s != ""]:
        match = re.fullmatch(r"\{(\*)?([A-Za-z_][A-Za-z0-9_]*)(?::([A-Za-z]+)(?:\([^)]*\))?)?(\?)?\}", segment)
        if match is None:
            if "{" in segment:
                raise ValueError(f"route segment '{segment}' mixes literals and parameters, which the engine does not support")
            parts.append(("/" + re.escape(segment), False))
            continue
        catch_all, name, constraint, optional = match.groups()
        body = ".*" if catch_all else _CONSTRAINTS.get((constraint or "").lower(), r"[^/]+")
        if catch_all or optional:
            parts.append((f"(?:/(?P<{name}>{body}))?", True))
        else:
            parts.append((f"/(?P<{name}>{body})", False))
    return re.compile("(?i:" + "".join(p for p, _ in parts) + ")/?", re.IGNORECASE)


class AuthKeys:
    """Function and master keys from settings."""

    def __init__(self, function_keys: set[str], master_key: str) -> None:
        self.function_keys = function_keys
        self.master_key = master_key

    def allows(self, level: str, key: str | None) -> bool:
        level = level.upper()
        if level == "ANONYMOUS":
            return True
        if not key:
            return False
        if key == self.master_key:
            return True
        return level == "FUNCTION" and key in self.function_keys


class HttpTriggers:
    """Routes requests to HTTP-triggered functions."""

    def __init__(self, index: AppIndex, prefix: str, keys: AuthKeys,
                 invoker: Callable[[FunctionSpec, dict[str, Any]], Awaitable[Invocation]]) -> None:
        self.prefix = prefix
        self.keys = keys
        self.invoker = invoker
        self.routes: list[Route] = []
        for spec in index.by_trigger("httpTrigger"):
            trigger = spec.trigger
            methods = trigger.get("methods")
            self.routes.append(Route(
                spec=spec,
                pattern=compile_route(str(trigger.get("route") or spec.name)),
                methods=frozenset(m.upper() for m in methods) if methods else None,
                auth_level=str(trigger.get("authLevel") or "FUNCTION"),
            ))
        self.inflight = 0

    def _match(self, method: str, path: str) -> tuple[Route | None, dict[str, str], bool]:
        prefix = "/" + self.prefix if self.prefix else ""
        if prefix and not path.lower().startswith(prefix.lower() + "/") and path.lower() != prefix.lower():
            return None, {}, False
        rest = path[len(prefix):]
        method_mismatch = False
        for route in self.routes:
            match = route.pattern.fullmatch(rest)
            if match is None:
                continue
            if route.methods is not None and method.upper() not in route.methods:
                method_mismatch = True
                continue
            return route, {k: v for k, v in match.groupdict().items() if v is not None}, False
        return None, {}, method_mismatch

    async def handle(self, method: str, url: str, headers: Mapping[str, str], body: bytes) -> HttpResult:
        parts = urlsplit(url)
        route, params, wrong_method = self._match(method, parts.path)
        if route is None:
            return HttpResult(405 if wrong_method else 404)
        query = dict(parse_qsl(parts.query, keep_blank_values=True))
        lowered = {k.lower(): v for k, v in headers.items()}
        key = lowered.get("x-functions-key") or query.get("code")
        if not self.keys.allows(route.auth_level, key):
            return HttpResult(401)
        request = func.HttpRequest(method.upper(), url, headers=dict(headers), params=query, route_params=params, body=body)
        self.inflight += 1
        try:
            invocation = await self.invoker(route.spec, {str(route.spec.trigger["name"]): request})
        except Exception:
            log.exception("HTTP function '%s' failed", route.spec.name)
            return HttpResult(500)
        finally:
            self.inflight -= 1
        return _to_result(route.spec, invocation)


def _to_result(spec: FunctionSpec, invocation: Invocation) -> HttpResult:
    value: Any = invocation.result
    for binding in spec.outputs:
        if binding.get("type") == "http" and binding.get("name") != "$return":
            value = invocation.outputs.get(str(binding.get("name")))
    if value is None:
        return HttpResult(204)
    if isinstance(value, func.HttpResponse):
        headers = {k: v for k, v in value.headers.items()}
        if value.mimetype and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = f"{value.mimetype}; charset={value.charset}" if value.charset else value.mimetype
        return HttpResult(value.status_code, headers, value.get_body() or b"")
    if isinstance(value, (str, bytes)):
        body = value.encode("utf-8") if isinstance(value, str) else value
        return HttpResult(200, {"Content-Type": "text/plain; charset=utf-8"}, body)
    log.error("HTTP function '%s' returned %s; expected func.HttpResponse or str", spec.name, type(value).__name__)
    return HttpResult(500)
