"""Retries inside one model call: which failures are worth another attempt, and how long to wait.

A model call is retried on the spot only for failures that another attempt can cure — HTTP 429,
408 and 5xx, timeouts, refused or reset connections — and only as often as the endpoint's
``retries.max_attempts`` allows. The wait honours the server: a ``retry-after-ms`` or
``Retry-After`` header (seconds or an HTTP date) is waited for when it is at most
``max_retry_after_seconds``; a longer one ends the call at once as unavailable, since sleeping
minutes inside an activity helps nobody (the turn's activity retry and the circuit breaker take
over). Without such a header the wait is exponential back-off with jitter.

When the attempts are spent the last error is raised as it is: :class:`InferenceUnavailable` or
:class:`InferenceTimeout`, so the Durable activity layer above still sees a transient failure.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass

#: HTTP statuses another attempt may cure.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 1
    backoff_seconds: float = 0.5
    max_backoff_seconds: float = 8.0
    max_retry_after_seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")

    def delay(self, attempt: int, retry_after: float | None) -> float | None:
        """Seconds to wait before attempt ``attempt + 1``; ``None`` when the server asked for longer
        than this policy waits (the call should end now)."""
        if retry_after is not None:
            if retry_after > self.max_retry_after_seconds:
                return None
            return max(0.0, retry_after)
        backoff = min(self.backoff_seconds * (2 ** (attempt - 1)), self.max_backoff_seconds)
        return backoff * (1 - 0.25 * random.random())


#: One attempt and no waiting: the app settings' default endpoint, where the activity retry owns the policy.
NO_RETRY = RetryPolicy(max_attempts=1)


def retry_after_seconds(headers: Mapping[str, str] | None, *, now: float | None = None) -> float | None:
    """What ``retry-after-ms`` or ``Retry-After`` asks for, in seconds (``None`` if neither says)."""
    if not headers:
        return None
    lowered = {str(k).lower(): str(v) for k, v in headers.items()}
    milliseconds = lowered.get("retry-after-ms")
    if milliseconds is not None:
        try:
            value = float(milliseconds) / 1000
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return max(0.0, value)
    raw = lowered.get("retry-after")
    if raw is None:
        return None
    try:
        value = float(raw)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed is None or parsed.tzinfo is None:
            return None
        return max(0.0, parsed.timestamp() - (time.time() if now is None else now))
    return max(0.0, value) if math.isfinite(value) else None
