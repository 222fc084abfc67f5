"""Helpers for the health tests: config documents, loopback ports, the platform and Azurite paths."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from kernel.settings import APP_ROOT
from tests.governance.loopback_identity import loopback_identity

AZURITE = APP_ROOT / "node_modules" / ".bin" / "azurite"
EVERYTHING = ["node_modules/@modelcontextprotocol/server-everything/dist/index.js", "stdio"]

requires_node = pytest.mark.skipif(
    shutil.which("node") is None or not (APP_ROOT / EVERYTHING[0]).is_file(),
    reason="the MCP reference servers need node and node_modules (run `make setup`)",
)


def free_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document))


def agent(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {"kind": "agent", "id": agent_id, "display_name": agent_id.title(),
            "purpose": "Keep the ledger current and explain changes.",
            "subscriptions": [{"event_types": ["ledger.*"]}], **fields}


def everything() -> dict[str, Any]:
    return {"kind": "mcp_server", "id": "everything", "transport": "stdio", "command": "node", "args": EVERYTHING}


TENANT = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
AUDIENCE = "api://aos-health"


def identity() -> Any:
    """A loopback identity provider for this module's tenant and audience: (JWKS URL, token factory)."""
    return loopback_identity(TENANT, AUDIENCE, kid="health", subject="operator-1")
