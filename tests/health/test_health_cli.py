"""``aos health`` and the CLI's Entra ID tokens, against ``aos run`` with AOS_AUTH=entra: tokens
signed by a test key served from a loopback JWKS endpoint; the token is sent, never printed."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from click.testing import CliRunner, Result
from health_support import AUDIENCE, TENANT, agent, free_port, identity, write

from kernel.cli import main as aos
from kernel.settings import APP_ROOT

#: The CLI's own settings, unset so that nothing from the caller's environment leaks into a run.
CLEAN_ENV: dict[str, str | None] = {"AOS_TOKEN": None, "AOS_AUTH_SCOPE": None, "AOS_MASTER_KEY": None, "AOS_URL": None}


async def _aos(*args: str, env: dict[str, str] | None = None) -> Result:
    """Run an ``aos`` command in a worker thread (it runs its own event loop)."""
    runner = CliRunner(env={**CLEAN_ENV, **(env or {})})
    return await asyncio.to_thread(runner.invoke, aos, list(args))


async def test_aos_health_signs_in_with_a_token_against_an_entra_platform(tmp_path: Path) -> None:
    configs, state, port = tmp_path / "configs", tmp_path / "state", free_port()
    write(configs, "keeper.json", agent("keeper"))
    async with identity() as (jwks_url, token):
        env = {k: v for k, v in os.environ.items() if not k.startswith("AOS_")}
        env.update({"AOS_AUTH": "entra", "AOS_AUTH_TENANT_ID": TENANT, "AOS_AUTH_AUDIENCE": AUDIENCE,
                    "AOS_AUTH_JWKS_URL": jwks_url, "AOS_CONFIG_PATHS": str(configs)})
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "kernel.cli", "run", "--port", str(port), "--state", str(state), cwd=APP_ROOT,
            env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        reader, nobody = token("AOS.Reader"), token()
        try:
            deadline = time.monotonic() + 60
            while not (state / "run.json").exists():
                assert process.returncode is None, (await process.stderr.read()).decode() if process.stderr else ""
                assert time.monotonic() < deadline, "aos run did not start"
                await asyncio.sleep(0.1)
            with_option = await _aos("health", "--url", url, "--token", reader)
            from_env = await _aos("health", "--url", url, "--json", env={"AOS_TOKEN": reader})
            agents = await _aos("agents", "--url", url, env={"AOS_TOKEN": reader})
            without = await _aos("health", "--url", url)
            no_role = await _aos("health", "--url", url, "--token", nobody)
            async with aiohttp.ClientSession() as http, http.get(f"{url}/api/health/ready") as answer:
                anonymous: tuple[int, Any] = (answer.status, await answer.json())
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), timeout=30)

    assert with_option.exit_code == 0, with_option.output
    assert with_option.output.startswith("OK") and "storage:tables" in with_option.output
    assert "model:offline" in with_option.output and "[offline]" in with_option.output
    assert from_env.exit_code == 0 and '"status": "ok"' in from_env.output
    assert agents.exit_code == 0 and "keeper" in agents.output  # every command sends the token
    assert without.exit_code == 1
    assert "(401)" in without.output and "pass --token or set AOS_TOKEN" in without.output
    assert no_role.exit_code == 1 and "(403)" in no_role.output and "needs the 'reader' role" in no_role.output
    for result in (with_option, from_env, agents, without, no_role):
        assert reader not in result.output and nobody not in result.output
    status, report = anonymous
    assert status == 200 and report["status"] == "ok"  # probes need no token; they get the summary only
    assert all("message" not in check for check in report["checks"])


async def test_a_scope_without_credentials_fails_to_sign_in_with_a_clear_error() -> None:
    result = await _aos("health", "--url", f"http://127.0.0.1:{free_port()}", "--auth-scope", "api://aos-health/.default",
                        env={"AZURE_CLIENT_ID": None, "AZURE_TENANT_ID": None, "AZURE_CLIENT_SECRET": None,
                             "AZURE_FEDERATED_TOKEN_FILE": None, "IDENTITY_ENDPOINT": None, "MSI_ENDPOINT": None})
    assert result.exit_code == 1
    assert "cannot get a token for api://aos-health/.default with DefaultAzureCredential" in result.output
    assert "pass --token" in result.output
