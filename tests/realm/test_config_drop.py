"""Configs dropped into the AOS_CONFIG_CONTAINER blob container register agents on every instance."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from kernel.adapters.embedded_blob import EmbeddedBlobStore
from kernel.config.drop import mirror
from kernel.platform import Platform

REPO = Path(__file__).resolve().parents[2]
SCOUT = {"id": "scout", "display_name": "Market Scout", "purpose": "Watch competitors and report market moves.",
         "subscriptions": [{"event_types": ["market.*"]}]}


async def test_mirror_copies_config_blobs_and_removes_deleted_ones(tmp_path: Path) -> None:
    blobs = EmbeddedBlobStore(tmp_path / "blobs")
    await blobs.put("agent-configs", "scout.json", json.dumps(SCOUT).encode())
    await blobs.put("agent-configs", "notes.txt", b"not a config")
    target = tmp_path / "drop" / "agent_configs"
    assert await mirror(blobs, "agent-configs", target) == ["scout.json"]
    assert sorted(p.name for p in target.iterdir()) == ["scout.json"]
    assert await mirror(blobs, "agent-configs", target) == [], "unchanged blobs are not rewritten"
    await blobs.delete("agent-configs", "scout.json")
    assert await mirror(blobs, "agent-configs", target) == ["scout.json"]
    assert list(target.iterdir()) == []


async def test_a_dropped_config_becomes_a_living_agent_and_a_deleted_one_retires(tmp_path: Path) -> None:
    state = tmp_path / "state"
    paths = f"{REPO / 'agent_configs'},{REPO / 'mcp_configs'}"
    async with Platform(state_dir=state, port=0, config_paths=paths,
                        extra_settings={"AOS_CONFIG_CONTAINER": "agent-configs"}) as platform:
        # Let the startup sync timer finish first, or it may be the one that sees the drop below.
        await platform.wait_idle(20)
        blobs = EmbeddedBlobStore(state / "blobs")  # the same files the platform's blob port uses
        await blobs.put("agent-configs", "scout.yaml", yaml.safe_dump(SCOUT).encode())
        report = await platform.sync()
        assert report["configured"] == ["scout"]
        status, sent = await platform.api("POST", "agents/scout/events", {"type": "market.move", "data": {"who": "Contoso"}})
        assert status == 202, sent
        for _ in range(100):
            await platform.wait_idle(20)
            status, turn = await platform.api("GET", sent["turn_url"].removeprefix("/api/"))
            if "outcome" in turn:
                break
        assert turn["outcome"] == "replied" and turn["config_version"]

        await blobs.delete("agent-configs", "scout.yaml")
        assert (await platform.sync())["retired"] == ["scout"]
        await platform.wait_idle(20)  # sync starts the retire command; the entity applies it after
        status, scout = await platform.api("GET", "agents/scout")
        assert scout["status"] == "retired" and scout["counters"]["turns"] == 1, "retired, state kept"


DIGEST = {"kind": "workflow", "id": "market-digest", "description": "The scout's market digest, on request.",
          "steps": [{"id": "scan", "agent": "cfo", "event": "finance.market.scan", "data": {}}]}


async def test_the_kernels_functions_mirror_dropped_configs_themselves(tmp_path: Path) -> None:
    """In Azure each app is its own process: the kernel's functions (workflows, config problems)
    must mirror the container themselves, not rely on the realm's functions having done it."""
    state = tmp_path / "state"
    paths = f"{REPO / 'agent_configs'},{REPO / 'mcp_configs'}"
    async with Platform(state_dir=state, port=0, config_paths=paths,
                        extra_settings={"AOS_CONFIG_CONTAINER": "agent-configs"}) as platform:
        await platform.wait_idle(20)  # the start's mirrors (realm and kernel) have run, before the drop
        blobs = EmbeddedBlobStore(state / "blobs")
        await blobs.put("agent-configs", "market-digest.yaml", yaml.safe_dump(DIGEST).encode())
        await blobs.put("agent-configs", "broken.json", b'{"kind": "agent", "id": "broken", ')

        status, synced = await platform.api("POST", "workflows/sync")  # the kernel's: mirrors at once
        assert status == 200, synced
        status, listed = await platform.api("GET", "workflows")
        assert status == 200 and "market-digest" in [w["id"] for w in listed["workflows"]], listed
        status, problems = await platform.api("GET", "configs/problems")
        assert any(p["file"].endswith("broken.json") for p in problems["problems"]), problems


async def test_a_mirror_that_fails_is_logged_and_the_configs_on_disk_serve(tmp_path: Path, caplog) -> None:
    from kernel import runtime, settings
    from kernel.config.drop import current_configs
    from kernel.config.store import default_store

    state = tmp_path / "state"
    state.mkdir()
    (state / "config-drop").write_text("a file where the mirror's folder should be")
    restore = settings.override({"AOS_STATE_DIR": str(state), "AOS_CONFIG_CONTAINER": "agent-configs",
                                 "AOS_CONFIG_PATHS": f"{REPO / 'agent_configs'},{REPO / 'mcp_configs'}"})
    default_store.cache_clear()
    try:
        configs = await current_configs(refresh=True)
        assert "cfo" in configs.agents
        assert "mirroring container 'agent-configs' failed" in caplog.text
    finally:
        await runtime.close()
        restore()
        default_store.cache_clear()
