"""A circuit breaker per inference endpoint: stop calling an endpoint that keeps failing.

After ``failure_threshold`` calls in a row fail with a transient error (unreachable, 5xx, 429,
timeout — after the call's own retries), the breaker opens: for ``cooldown_seconds`` every call
fails at once with :class:`InferenceUnavailable`, naming the endpoint, the time it will be tried
again and the last error. Then it is half-open: one trial call goes through (others still fail
fast); its success closes the breaker, its failure opens it for another cooldown. An answer that
is an error of the request (HTTP 400, a malformed completion) proves the endpoint is up and
counts as a success.

Breakers are process-wide and shared by every event loop (plain state under a lock, no asyncio
objects), keyed by endpoint id and URL, so a changed URL starts with a closed breaker. In Azure
each Function instance has its own.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

from kernel.inference.port import InferenceUnavailable

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class CircuitBreaker:
    def __init__(self, name: str, *, failure_threshold: int = 5, cooldown_seconds: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_seconds = cooldown_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CLOSED
        self._failures = 0
        self._open_until = 0.0
        self._probing = False
        self._last_error = ""

    def configure(self, *, failure_threshold: int, cooldown_seconds: float) -> None:
        with self._lock:
            self.failure_threshold, self.cooldown_seconds = failure_threshold, cooldown_seconds

    def before_call(self) -> bool:
        """Raise :class:`InferenceUnavailable` if the endpoint must not be called now; returns
        whether this call is the half-open trial (pass it to ``success``/``failure``/``release``)."""
        with self._lock:
            if self._state == CLOSED:
                return False
            now = self._clock()
            if self._state == OPEN and now < self._open_until:
                raise self._open_error(now)
            if self._probing:
                raise InferenceUnavailable(
                    f"inference endpoint {self.name} is failing: a trial call is in flight after "
                    f"{self._failures} failed calls in a row; last error: {self._last_error}")
            self._state, self._probing = HALF_OPEN, True
            return True

    def success(self, trial: bool = False) -> None:
        with self._lock:
            self._state, self._failures, self._last_error = CLOSED, 0, ""
            if trial:
                self._probing = False

    def failure(self, error: BaseException, trial: bool = False) -> None:
        with self._lock:
            self._failures += 1
            self._last_error = _clip(str(error))
            if trial:
                self._probing = False
            if self._state == HALF_OPEN or self._failures >= self.failure_threshold:
                self._state = OPEN
                self._open_until = self._clock() + self.cooldown_seconds

    def release(self, trial: bool) -> None:
        """The call ended without telling anything about the endpoint (cancelled, refused before sending)."""
        if trial:
            with self._lock:
                self._probing = False

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            now = self._clock()
            until = None
            if self._state == OPEN and now < self._open_until:
                until = _wall(self._open_until - now)
            return {"state": self._state, "failures": self._failures, "open_until": until,
                    "last_error": self._last_error or None}

    def _open_error(self, now: float) -> InferenceUnavailable:
        remaining = self._open_until - now
        return InferenceUnavailable(
            f"inference endpoint {self.name} is failing: after {self._failures} failed calls in a row it is not "
            f"called until {_wall(remaining)} (in {remaining:.0f} s); last error: {self._last_error}")


_breakers: dict[tuple[str, ...], CircuitBreaker] = {}
_registry_lock = threading.Lock()


def breaker_for(key: tuple[str, ...], name: str, *, failure_threshold: int, cooldown_seconds: float) -> CircuitBreaker:
    """The process-wide breaker of one endpoint (thresholds follow the current config)."""
    with _registry_lock:
        found = _breakers.get(key)
        if found is None:
            found = _breakers[key] = CircuitBreaker(name, failure_threshold=failure_threshold,
                                                    cooldown_seconds=cooldown_seconds)
            return found
    found.configure(failure_threshold=failure_threshold, cooldown_seconds=cooldown_seconds)
    return found


def _wall(seconds_from_now: float) -> str:
    moment = datetime.now(timezone.utc) + timedelta(seconds=max(0.0, seconds_from_now))
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
