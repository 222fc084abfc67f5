"""The HTTP ingress span: where a trace starts when an event comes in over HTTP.

``@traced_route("agents/{agent_id}/events")`` under the route decorator runs the handler in a
SERVER span named ``POST /api/agents/{agent_id}/events``. Its parent is the caller's W3C
``traceparent`` header when it sends one (else the ``traceparent`` field of a JSON body, the
envelope's own), so a caller's trace continues through the platform. The handler stamps the
envelope it sends with this span (``kernel.telemetry.stamp``). The wrapper keeps the handler's
signature, so the Functions worker binds the same parameters.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import Any, TypeVar

import azure.functions as func
from opentelemetry.trace import SpanKind, Status, StatusCode

from kernel.telemetry.ids import parse_traceparent
from kernel.telemetry.spans import span

Handler = TypeVar("Handler", bound=Callable[..., Any])
ROUTE_PREFIX = "/api/"


def incoming_traceparent(req: func.HttpRequest) -> str | None:
    """The caller's trace context: the ``traceparent`` header, else a JSON body's ``traceparent``."""
    header = req.headers.get("traceparent")
    if parse_traceparent(header):
        return header
    raw = req.get_body() or b""
    if not raw.lstrip().startswith(b"{"):
        return None
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        return None
    value = body.get("traceparent") if isinstance(body, dict) else None
    return value if isinstance(value, str) and parse_traceparent(value) else None


def traced_route(route: str) -> Callable[[Handler], Handler]:
    """Run the route's handler in an HTTP SERVER span (see the module docstring)."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        async def traced(*args: Any, **kwargs: Any) -> Any:
            req = next(v for v in (*args, *kwargs.values()) if isinstance(v, func.HttpRequest))
            method = req.method.upper()
            attributes = {"http.request.method": method, "http.route": ROUTE_PREFIX + route,
                          "url.path": _path(req.url), **{f"aos.{k}": v for k, v in (req.route_params or {}).items()}}
            with span(f"{method} {ROUTE_PREFIX}{route}", kind=SpanKind.SERVER, parent=incoming_traceparent(req),
                      attributes=attributes) as current:
                result = handler(*args, **kwargs)
                response = await result if inspect.isawaitable(result) else result
                status = getattr(response, "status_code", None)
                if isinstance(status, int):
                    current.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        current.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
                return response

        return traced  # type: ignore[return-value]

    return decorate


def _path(url: str) -> str:
    """The URL's path, without the query (which may carry a function key: ``code=``)."""
    without_scheme = url.split("://", 1)[-1]
    path = "/" + without_scheme.split("/", 1)[1] if "/" in without_scheme else "/"
    return path.split("?", 1)[0]
