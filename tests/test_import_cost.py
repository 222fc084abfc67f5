"""Importing ``function_app`` (the Functions cold start) must not load SDKs that only some calls need.

The Functions host imports the app before it can index it, so every module loaded at import is paid
on each cold start. The heavy SDKs below load on first use instead; this test checks which modules
the import leaves out, in a fresh interpreter, rather than timing it (time depends on the machine).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Loaded on first use: the mcp SDK (context tools, the gateway), openai (model calls), jsonschema
#: (MCP tool argument checks), the Azure storage / Service Bus / identity / Key Vault clients (only
#: with those adapters configured), the Azure Monitor exporter (only with a connection string).
LAZY = (
    "mcp", "mcp_types", "openai", "jsonschema", "anyio", "httpx",
    "azure.storage.blob", "azure.data.tables", "azure.servicebus", "azure.identity", "azure.keyvault.secrets",
    "azure.monitor.opentelemetry", "azure.monitor.opentelemetry.exporter", "opentelemetry.sdk",
    "azure.ai.ml", "torch", "transformers", "peft",
)

PROBE = """
import json, sys
import function_app
names = [f.get_function_name() for f in function_app.app.get_functions()]
print(json.dumps({"loaded": [m for m in json.loads(sys.argv[1]) if m in sys.modules], "functions": len(names)}))
"""


def _import_app(roles: str | None) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AOS_")}
    if roles is not None:
        env["AOS_APP_ROLES"] = roles
    done = subprocess.run([sys.executable, "-c", PROBE, json.dumps(LAZY)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("roles", [None, "kernel", "realm", "mcp"])
def test_importing_the_app_leaves_heavy_sdks_for_first_use(roles: str | None) -> None:
    found = _import_app(roles)
    assert found["functions"], "the app indexed no functions"
    assert found["loaded"] == [], f"importing function_app (roles {roles or 'all'}) loaded {found['loaded']}"


def test_lazy_modules_still_load_when_used() -> None:
    """The deferred imports are real: the code paths that need them import them."""
    probe = (
        "import sys, function_app\n"
        "from realm_of_agents import context_server\n"
        "from kernel.inference.openai_compatible import OpenAICompatibleProvider\n"
        "provider = OpenAICompatibleProvider('http://127.0.0.1:9/v1', api_key=None, default_model='m', timeout=1.0)\n"
        "provider._auth_options()\n"
        "from mcp_servers import manager\n"
        "print(all(m in sys.modules for m in ('mcp', 'openai', 'jsonschema')))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True"
