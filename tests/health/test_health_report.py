"""Readiness checks run together under a timeout; the verdict; nothing secret in what they say."""

from __future__ import annotations

import asyncio

import pytest

from kernel.health.report import (
    DEGRADED,
    FAILED,
    OK,
    Check,
    CheckResult,
    Outcome,
    run_checks,
    scrub,
    secret_values,
    verdict,
)


def _result(status: str, required: bool) -> CheckResult:
    return CheckResult("x", "storage", required, status, 1.0, None, None, {})


@pytest.mark.parametrize("statuses, expected", [
    ([(OK, True), (OK, False)], OK),
    ([(OK, True), (FAILED, False)], DEGRADED),
    ([(OK, True), (DEGRADED, False)], DEGRADED),
    ([(DEGRADED, True), (OK, False)], FAILED),
    ([(FAILED, True), (FAILED, False)], FAILED),
    ([], OK),
])
def test_required_checks_decide_readiness_and_optional_ones_degrade_it(statuses, expected) -> None:
    assert verdict([_result(status, required) for status, required in statuses]) == expected


async def test_checks_run_at_once_each_under_the_timeout_and_errors_become_failures() -> None:
    second_started = asyncio.Event()

    async def waits_for_the_other() -> Outcome:
        await second_started.wait()  # only finishes if the checks run concurrently
        return Outcome(detail={"n": 1})

    async def starts() -> Outcome:
        second_started.set()
        return Outcome(DEGRADED, "Starting", "still starting")

    async def hangs() -> Outcome:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def breaks() -> Outcome:
        raise ConnectionRefusedError("connect to https://aos:hunter22@db.example/x?sig=abc%2F failed")

    checks = [Check("a", "storage", True, waits_for_the_other), Check("b", "mcp", False, starts),
              Check("c", "bus", True, hangs), Check("d", "model", False, breaks)]
    a, b, c, d = await run_checks(checks, timeout=0.5)

    assert (a.name, a.status, a.detail) == ("a", OK, {"n": 1})
    assert (b.status, b.error, b.message, b.required) == (DEGRADED, "Starting", "still starting", False)
    assert (c.status, c.error, c.message) == (FAILED, "Timeout", "no answer within 0.5 s")
    assert (d.status, d.error) == (FAILED, "ConnectionRefusedError")
    assert d.message == "connect to https://***@db.example/x?*** failed"
    assert all(r.latency_ms >= 0 for r in (a, b, c, d))
    assert set(c.summary()) == {"name", "kind", "required", "status", "latency_ms", "error"}
    assert c.full()["message"] == "no answer within 0.5 s"


def test_scrub_masks_connection_string_secrets_known_values_and_url_credentials() -> None:
    text = ("DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=c2VjcmV0a2V5;EndpointSuffix=x; "
            "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=S3cr3tKey= "
            "GET https://acct.blob.core.windows.net/c/b?sv=2024&sig=AbC%3D and password=pw123 and the-known-value")
    cleaned = scrub(text, ["the-known-value"])
    for secret in ("c2VjcmV0a2V5", "S3cr3tKey", "AbC%3D", "pw123", "the-known-value", "sv=2024"):
        assert secret not in cleaned
    assert "AccountName=acct" in cleaned and "ns.servicebus.windows.net" in cleaned
    assert len(scrub("x" * 1000)) == 300


def test_secret_looking_settings_are_masked_but_identity_based_names_and_urls_are_not() -> None:
    environ = {
        "AzureWebJobsStorage": "UseDevelopmentStorage=true",
        "ServiceBusConnection": "Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=abcdefgh",
        "ServiceBusConnection__fullyQualifiedNamespace": "ns.servicebus.windows.net",
        "AOS_MASTER_KEY": "master-key-value",
        "LAB_API_KEY": "planted-api-key",
        "MY_CLIENT_SECRET": "planted-secret",
        "AOS_KEY_VAULT_URL": "https://vault.vault.azure.net",
        "AOS_STORAGE": "embedded-storage",
        "SHORT_KEY": "abc",
    }
    assert sorted(secret_values(environ)) == sorted([
        "UseDevelopmentStorage=true", "Endpoint=sb://ns/;SharedAccessKeyName=k;SharedAccessKey=abcdefgh",
        "master-key-value", "planted-api-key", "planted-secret"])


def test_secrets_the_process_resolved_are_masked_even_when_no_setting_holds_them() -> None:
    from kernel.governance import secret_values as resolved

    value = "kv-resolved-" + "7f3a9c2e1b5d"
    resolved.remember(value)  # as a Key Vault read through the secrets port does
    assert scrub(f"endpoint refused key {value}") == "endpoint refused key [redacted]"
