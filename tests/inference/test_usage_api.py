"""``GET /api/usage`` and ``aos usage`` on the platform running the sample configs (offline: every
sample endpoint is disabled, so the rows say ``offline``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from click.testing import CliRunner

from kernel.cli import main as aos
from kernel.platform import Platform


async def test_usage_over_http_and_the_cli(tmp_path: Path) -> None:
    async with Platform(state_dir=tmp_path / "state", port=0) as platform:
        status, sent = await platform.api("POST", "agents/cfo/events",
                                          {"type": "invoice.received", "data": {"vendor": "Fabrikam"}})
        assert status == 202
        await platform.wait_idle(60)
        status, turn = await platform.api("GET", f"agents/cfo/turns/{sent['turn_id']}")
        assert turn["provider"] == "offline" and turn["reply"].startswith("[offline]")

        status, report = await platform.api("GET", "usage?agent=cfo&days=1")
        assert status == 200
        route = report["agents"]["cfo"]["by_route"]
        assert list(route) == ["offline/cfo-finance"] and route["offline/cfo-finance"]["calls"] == 1
        status, everyone = await platform.api("GET", "usage")
        assert status == 200 and set(everyone["agents"]) == {"cfo"}, "only agents with calls are listed"
        for bad in ("usage?days=0", "usage?days=soon", "usage?agent=Not_An_Id"):
            status, answer = await platform.api("GET", bad)
            assert status == 400 and "error" in answer

        result = await asyncio.to_thread(CliRunner().invoke, aos, ["usage", "cfo", "--url", platform.base_url,
                                                                    "--key", platform.key])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if line.startswith("cfo ")]
    assert row.split()[:4] == ["cfo", "offline", "cfo-finance", "1"]
