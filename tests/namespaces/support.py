"""Config writers and timing helpers the namespace end-to-end tests share."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any


def write_config(folder: Path, name: str, document: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_text(json.dumps(document))


def ledger_agent(configs: Path, agent_id: str, namespace: str | None = None, **fields: Any) -> None:
    """A ledger-keeping agent subscribed to ``ledger.*``, in ``namespace`` (the default one when None)."""
    write_config(configs / (namespace or "default"), f"{agent_id}.json", {
        "kind": "agent", "id": agent_id, "display_name": agent_id.title(),
        "purpose": "Keep the ledger current and explain changes.", **({"namespace": namespace} if namespace else {}),
        "subscriptions": [{"event_types": ["ledger.*"]}],
        **fields})


def namespace_doc(configs: Path, name: str, **fields: Any) -> None:
    write_config(configs / "namespaces", f"{name}.json", {"kind": "namespace", "id": name, **fields})


async def clear_of_the_minute_boundary() -> None:
    """Quota windows start again each minute: keep the test's turns inside one."""
    seconds = time.time() % 60
    if seconds > 40:
        await asyncio.sleep(60 - seconds + 0.5)
