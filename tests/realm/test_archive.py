"""The turn archive over the embedded blob and table adapters: layout, order, search, idempotency."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kernel.adapters.embedded_blob import EmbeddedBlobStore
from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.ports import NotFound
from realm_of_agents.archive import SEARCH_TEXT_CHARS, TurnArchive, row_key, search_text


def turn(n: int, *, agent: str = "cfo", vendor: str = "Contoso", reply: str | None = None,
         finished: str | None = None, outcome: str = "replied") -> dict[str, Any]:
    return {
        "agent_id": agent,
        "turn_id": f"turn-{agent}-{n:016x}",
        "config_version": "1",
        "event": {"id": f"evt-{n}", "type": "finance.invoice.received", "source": "erp",
                  "time": f"2026-11-21T10:{n:02d}:00+00:00",
                  "data": {"vendor": vendor, "invoice": f"INV-{n:04d}", "amount": 100 * n}},
        "started": f"2026-11-21T10:{n:02d}:00+00:00",
        "finished": finished or f"2026-11-21T10:{n:02d}:05+00:00",
        "outcome": outcome,
        "alignment": {"aligned": True, "score": 0.5, "reason": "subscribed", "method": "lexical"},
        "steps": [
            {"kind": "model", "tokens_in": 10},
            {"kind": "tool", "index": 0, "server": "erp", "tool": "lookup", "arguments": {"id": n}, "result": {"ok": True}},
            {"kind": "tool", "index": 1, "server": "erp", "tool": "approve", "arguments": {}, "error": "timeout"},
        ],
        "reply": reply if reply is not None else f"Invoice INV-{n:04d} from {vendor} checked against budget.",
        "decision": {"action": "reply", "rationale": "within the quarterly budget"},
        "error": None,
        "outputs": [],
    }


@pytest.fixture
async def stores(tmp_path: Path):
    blobs = EmbeddedBlobStore(tmp_path / "blobs")
    tables = EmbeddedTableStore(tmp_path / "tables.sqlite")
    yield blobs, tables
    await blobs.close()
    await tables.close()


@pytest.fixture
def archive(stores) -> TurnArchive:
    return TurnArchive(*stores)


async def test_save_writes_the_blob_and_one_index_row(archive: TurnArchive, stores) -> None:
    blobs, tables = stores
    record = turn(1)
    await archive.save(record)

    name = f"cfo/{record['turn_id']}.json"
    assert await blobs.list("turns") == [name]
    info = await blobs.properties("turns", name)
    assert info.content_type == "application/json"
    assert json.loads(await blobs.get("turns", name)) == record

    rows = await tables.query("turns", "cfo")
    assert len(rows) == 1
    row = rows[0]
    assert row["RowKey"] == row_key(record)
    assert row["RowKey"].endswith("-" + record["turn_id"])
    assert row["turn_id"] == record["turn_id"]
    assert row["time"] == record["finished"]
    assert (row["event_type"], row["event_id"], row["outcome"], row["tool_calls"]) == (
        "finance.invoice.received", "evt-1", "replied", 2)
    assert "Contoso" in row["text"] and "INV-0001" in row["text"] and "quarterly budget" in row["text"]


async def test_get_returns_the_full_record(archive: TurnArchive) -> None:
    record = turn(2)
    await archive.save(record)
    assert await archive.get("cfo", record["turn_id"]) == record


async def test_get_unknown_turn_names_agent_and_turn(archive: TurnArchive) -> None:
    with pytest.raises(NotFound, match="agent 'cfo' has no archived turn 'turn-cfo-missing'"):
        await archive.get("cfo", "turn-cfo-missing")


async def test_recent_is_newest_first_and_limited(archive: TurnArchive) -> None:
    for n in (3, 1, 4, 2, 5):  # saved out of order
        await archive.save(turn(n))
    await archive.save(turn(9, agent="hr"))
    rows = await archive.recent("cfo", limit=3)
    assert [row["event_id"] for row in rows] == ["evt-5", "evt-4", "evt-3"]
    assert set(rows[0]) == {"turn_id", "time", "event_type", "event_id", "outcome", "text", "tool_calls"}
    assert [row["event_id"] for row in await archive.recent("hr")] == ["evt-9"]
    assert await archive.recent("nobody") == []


async def test_order_follows_finished_time_across_midnight_and_offsets(archive: TurnArchive) -> None:
    await archive.save(turn(1, finished="2026-11-21T23:59:59.999+00:00"))
    await archive.save(turn(2, finished="2026-11-22T01:00:00+02:00"))  # 23:00 UTC: older
    await archive.save(turn(3, finished="2026-11-22T00:00:00Z"))
    assert [row["event_id"] for row in await archive.recent("cfo")] == ["evt-3", "evt-1", "evt-2"]


async def test_saving_the_same_turn_twice_keeps_one_blob_and_one_row(archive: TurnArchive, stores) -> None:
    blobs, tables = stores
    record = turn(7)
    assert await archive.save(record) is False
    assert await archive.save(record) is True, "the second save knows it is a retry"
    assert await blobs.list("turns") == [f"cfo/{record['turn_id']}.json"]
    assert len(await tables.query("turns", "cfo")) == 1


async def test_resaving_a_turn_with_another_finish_time_moves_its_row(archive: TurnArchive, stores) -> None:
    _, tables = stores
    await archive.save(turn(7, finished="2026-11-21T10:07:05+00:00"))
    retried = turn(7, finished="2026-11-21T10:08:00+00:00", reply="Approved after retry.")
    await archive.save(retried)
    rows = await tables.query("turns", "cfo")
    assert [row["RowKey"] for row in rows] == [row_key(retried)]
    assert (await archive.get("cfo", retried["turn_id"]))["reply"] == "Approved after retry."


async def test_search_scores_by_share_of_query_terms(archive: TurnArchive) -> None:
    await archive.save(turn(1, vendor="Contoso", reply="Paid the Contoso invoice."))
    await archive.save(turn(2, vendor="Fabrikam", reply="Fabrikam invoice held for review."))
    await archive.save(turn(3, vendor="Contoso", reply="Contoso invoice disputed."))

    hits = await archive.search("cfo", "Contoso disputes")
    assert [hit["event_id"] for hit in hits] == ["evt-3", "evt-1"]  # both terms, then one term
    assert [hit["score"] for hit in hits] == [1.0, 0.5]
    assert set(hits[0]) == {"turn_id", "time", "event_type", "event_id", "outcome", "text", "tool_calls", "score"}

    # Equal scores: newer first. Stop words do not count; stems match ("invoices" ~ "invoice").
    assert [hit["event_id"] for hit in await archive.search("cfo", "the invoices")] == ["evt-3", "evt-2", "evt-1"]
    assert await archive.search("cfo", "payroll") == []
    assert len(await archive.search("cfo", "invoice", limit=2)) == 2


async def test_search_reads_only_the_newest_scan_rows(archive: TurnArchive) -> None:
    await archive.save(turn(1, vendor="Northwind"))
    for n in range(2, 6):
        await archive.save(turn(n, vendor="Contoso"))
    assert await archive.search("cfo", "Northwind", scan=4) == []
    assert [hit["event_id"] for hit in await archive.search("cfo", "Northwind", scan=5)] == ["evt-1"]


async def test_search_rejects_a_query_without_terms(archive: TurnArchive) -> None:
    with pytest.raises(ValueError, match="no searchable words"):
        await archive.search("cfo", "the of and")
    with pytest.raises(ValueError, match="no searchable words"):
        await archive.search("cfo", "   ")


async def test_search_text_is_clipped_and_keeps_the_reply(archive: TurnArchive) -> None:
    record = turn(1, reply="Escalated to treasury.")
    record["event"]["data"]["notes"] = "lorem ipsum " * 1000
    text = search_text(record)
    assert len(text) <= SEARCH_TEXT_CHARS
    assert "Escalated to treasury." in text and "quarterly budget" in text
    await archive.save(record)
    assert [hit["event_id"] for hit in await archive.search("cfo", "treasury")] == ["evt-1"]


@pytest.mark.parametrize("bad", ["", "a/b", "a#b", "what?", "..", "ends.", "tab\there", 42, None])
async def test_bad_agent_ids_are_refused_naming_the_value(archive: TurnArchive, bad: Any) -> None:
    with pytest.raises(ValueError, match="invalid agent id") as raised:
        await archive.recent(bad)
    assert repr(bad) in str(raised.value)
    record = turn(1)
    record["agent_id"] = bad
    with pytest.raises(ValueError, match="invalid agent id"):
        await archive.save(record)


@pytest.mark.parametrize("bad", ["", "t/1", "t#1", "t?1", "..", "x\n"])
async def test_bad_turn_ids_are_refused_naming_the_value(archive: TurnArchive, bad: str) -> None:
    with pytest.raises(ValueError, match="invalid turn id") as raised:
        await archive.get("cfo", bad)
    assert repr(bad) in str(raised.value)
    record = turn(1)
    record["turn_id"] = bad
    with pytest.raises(ValueError, match="invalid turn id"):
        await archive.save(record)


async def test_a_record_without_a_usable_time_is_refused(archive: TurnArchive) -> None:
    record = turn(1)
    record["finished"] = "yesterday"
    with pytest.raises(ValueError, match="not an ISO 8601 time"):
        await archive.save(record)
    record["finished"] = record["started"] = None
    with pytest.raises(ValueError, match="no 'finished'"):
        await archive.save(record)


def test_bad_container_or_table_names_are_refused(stores) -> None:
    with pytest.raises(ValueError, match="invalid container name"):
        TurnArchive(*stores, container="Turns")
    with pytest.raises(ValueError, match="invalid table name"):
        TurnArchive(*stores, table="turn-index")
