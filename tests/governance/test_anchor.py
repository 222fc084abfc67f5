"""Anchors catch what hash links alone cannot: a chain cut short with its head moved back.

Real stores (embedded SQLite tables and blob files); tampering goes through the stores as an
attacker with storage access would do it.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from kernel.adapters.embedded_blob import EmbeddedBlobStore
from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.governance.anchor import CHAIN, CONTAINER, Anchors
from kernel.governance.audit import AuditLog, record_hash

TABLE = "audit"


@pytest.fixture
async def stores(tmp_path: Path) -> AsyncIterator[tuple[EmbeddedTableStore, EmbeddedBlobStore]]:
    tables, blobs = EmbeddedTableStore(tmp_path / "tables.sqlite"), EmbeddedBlobStore(tmp_path / "blobs")
    yield tables, blobs
    await tables.close()
    await blobs.close()


async def fill(log: AuditLog, chain: str, count: int) -> None:
    for n in range(count):
        await log.append(chain, "tool.call", actor=chain, data={"n": n})


async def cut_short(tables: EmbeddedTableStore, chain: str, keep: int) -> None:
    """Remove every record after ``keep`` and move the head back to it: invisible to hash links."""
    for row in await tables.query(TABLE, chain):
        if row["RowKey"] != "head" and int(row["RowKey"]) > keep:
            await tables.delete(TABLE, chain, row["RowKey"])
    kept = await tables.get(TABLE, chain, f"{keep:012d}")
    head = await tables.get(TABLE, chain, "head")
    await tables.upsert(TABLE, {**{k: v for k, v in head.items() if k != "etag"}, "seq": keep, "hash": kept["hash"]})


async def test_cutting_a_chain_short_passes_the_hash_links_but_not_the_anchor(stores: Any) -> None:
    tables, blobs = stores
    log = AuditLog(tables)
    anchors = Anchors(log, blobs)
    await fill(log, "cfo", 5)
    await fill(log, "cto", 2)
    done = await anchors.anchor()
    assert done is not None and done["chains"] == 2 and done["seq"] == 1

    await cut_short(tables, "cfo", keep=3)

    assert (await log.verify("cfo")).ok, "the links alone cannot see it: that is why anchors exist"
    report = await anchors.verify()
    assert not report.ok and report.chains_checked == 2
    [problem] = report.problems
    assert (problem.chain, problem.seq) == ("cfo", 5)
    assert "gone: the chain was cut short" in problem.detail
    assert (await anchors.verify("cto")).ok, "one chain's verification looks at that chain only"


async def test_a_record_rewritten_with_fresh_hashes_after_its_anchor_is_caught(stores: Any) -> None:
    tables, blobs = stores
    log = AuditLog(tables)
    anchors = Anchors(log, blobs)
    await fill(log, "ops", 3)
    await anchors.anchor()
    # rewrite record 3 and give it a hash that fits, and move the head along: the chain itself verifies
    entity = await tables.get(TABLE, "ops", f"{3:012d}")
    entity["data"] = json.dumps({"n": 999})
    entity["hash"] = record_hash({**entity, "chain": "ops", "data": {"n": 999}})
    await tables.upsert(TABLE, {k: v for k, v in entity.items() if k != "etag"})
    head = await tables.get(TABLE, "ops", "head")
    await tables.upsert(TABLE, {**{k: v for k, v in head.items() if k != "etag"}, "hash": entity["hash"]})
    assert (await log.verify("ops")).ok
    [problem] = (await anchors.verify()).problems
    assert (problem.chain, problem.seq) == ("ops", 3) and "rewritten after it was anchored" in problem.detail


async def test_anchoring_again_without_new_records_writes_nothing(stores: Any) -> None:
    tables, blobs = stores
    log = AuditLog(tables)
    anchors = Anchors(log, blobs)
    assert await anchors.anchor() is None, "nothing to anchor in an empty log"
    await fill(log, "ceo", 1)
    assert await anchors.anchor() is not None
    assert await anchors.anchor() is None
    await fill(log, "ceo", 1)
    second = await anchors.anchor()
    assert second is not None and second["seq"] == 2
    assert len(await blobs.list(CONTAINER)) == 2
    report = await anchors.verify()
    assert report.ok and report.anchored and report.anchor_seq == 2 and report.chains_checked == 1
    assert (await log.verify(CHAIN)).ok, "the anchors chain is an audit chain like the others"


async def test_removing_the_anchor_records_does_not_hide_a_cut_while_the_blobs_remain(stores: Any) -> None:
    tables, blobs = stores
    log = AuditLog(tables)
    anchors = Anchors(log, blobs)
    await fill(log, "cfo", 4)
    await anchors.anchor()
    for row in await tables.query(TABLE, CHAIN):  # the attacker removes the anchors chain as well
        await tables.delete(TABLE, CHAIN, row["RowKey"])
    await cut_short(tables, "cfo", keep=1)
    details = [p.detail for p in (await anchors.verify()).problems]
    assert any("anchors chain is empty" in d for d in details)
    assert any("cut short" in d for d in details)


async def test_a_missing_or_altered_anchor_blob_is_reported(stores: Any) -> None:
    tables, blobs = stores
    log = AuditLog(tables)
    anchors = Anchors(log, blobs)
    await fill(log, "cfo", 2)
    done = await anchors.anchor()
    await blobs.put(CONTAINER, done["blob"], b'{"v":1,"heads":{}}')
    problems = (await anchors.verify()).problems
    assert any(f"anchor blob {done['blob']} is missing or does not match" in p.detail for p in problems)


async def test_an_anchor_whose_record_was_never_written_still_counts(stores: Any) -> None:
    """A blob written before an append that failed holds real heads: checking it is sound, not an alarm."""
    tables, blobs = stores
    log = AuditLog(tables)
    anchors = Anchors(log, blobs)
    await fill(log, "cfo", 2)
    await anchors.anchor()
    await fill(log, "cfo", 1)
    heads = await anchors.heads()
    await blobs.put(CONTAINER, "29990101T000000000000Z-orphan.json", json.dumps({"v": 1, "heads": heads}).encode())
    assert (await anchors.verify()).ok
    await cut_short(tables, "cfo", keep=2)
    [problem] = (await anchors.verify()).problems
    assert (problem.chain, problem.seq) == ("cfo", 3)
