"""Retry-After parsing, the retry policy's waits, and the circuit breaker's states (a fake clock)."""

from __future__ import annotations

import email.utils

import pytest

from kernel.inference.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from kernel.inference.port import InferenceUnavailable
from kernel.inference.retry import RetryPolicy, retry_after_seconds


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "3"}, 3.0),
    ({"retry-after": "0.5"}, 0.5),
    ({"retry-after-ms": "250", "Retry-After": "9"}, 0.25),  # milliseconds win, as the openai SDK does
    ({"Retry-After": "-4"}, 0.0),
    ({"Retry-After": "soon"}, None),
    ({"retry-after-ms": "nan", "Retry-After": "2"}, 2.0),
    ({}, None),
    (None, None),
])
def test_retry_after_headers(headers, expected) -> None:
    assert retry_after_seconds(headers) == expected


def test_retry_after_as_an_http_date() -> None:
    now = 1_800_000_000.0
    header = email.utils.formatdate(now + 7, usegmt=True)
    assert retry_after_seconds({"Retry-After": header}, now=now) == pytest.approx(7.0)


def test_the_policy_honours_retry_after_up_to_its_cap_and_backs_off_otherwise() -> None:
    policy = RetryPolicy(max_attempts=5, backoff_seconds=1.0, max_backoff_seconds=3.0, max_retry_after_seconds=10)
    assert policy.delay(1, 4.0) == 4.0
    assert policy.delay(1, 11.0) is None
    waits = [policy.delay(attempt, None) for attempt in (1, 2, 3, 4)]
    for wait, ceiling in zip(waits, (1.0, 2.0, 3.0, 3.0)):
        assert 0.75 * ceiling <= wait <= ceiling
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_fails_fast_lets_one_trial_through_and_closes() -> None:
    clock = Clock()
    breaker = CircuitBreaker("'lab' (h:1)", failure_threshold=3, cooldown_seconds=10, clock=clock)
    for _ in range(2):
        trial = breaker.before_call()
        breaker.failure(RuntimeError("HTTP 503"), trial)
    assert breaker.snapshot()["state"] == CLOSED and breaker.snapshot()["failures"] == 2
    breaker.before_call()
    breaker.success()
    assert breaker.snapshot()["failures"] == 0, "a success resets the count: failures must be consecutive"

    for _ in range(3):
        breaker.failure(RuntimeError("HTTP 503: overloaded"), breaker.before_call())
    snapshot = breaker.snapshot()
    assert snapshot["state"] == OPEN and snapshot["open_until"].endswith("Z")
    with pytest.raises(InferenceUnavailable, match=r"'lab' \(h:1\) is failing: after 3 failed calls in a row .* "
                                                   r"\(in 10 s\); last error: HTTP 503: overloaded"):
        breaker.before_call()

    clock.now += 10
    assert breaker.before_call() is True  # the trial
    assert breaker.snapshot()["state"] == HALF_OPEN
    with pytest.raises(InferenceUnavailable, match="a trial call is in flight"):
        breaker.before_call()
    breaker.release(True)  # the trial was cancelled: the next call is the trial
    assert breaker.before_call() is True
    breaker.success(True)
    assert breaker.snapshot() == {"state": CLOSED, "failures": 0, "open_until": None, "last_error": None}


def test_a_failed_trial_opens_the_breaker_again_for_a_full_cooldown() -> None:
    clock = Clock()
    breaker = CircuitBreaker("lab", failure_threshold=1, cooldown_seconds=5, clock=clock)
    breaker.failure(RuntimeError("down"), breaker.before_call())
    clock.now += 5
    breaker.failure(RuntimeError("still down"), breaker.before_call())
    clock.now += 4.9
    with pytest.raises(InferenceUnavailable, match="still down"):
        breaker.before_call()
