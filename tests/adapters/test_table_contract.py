"""The TableStore contract: the SQLite store and Azure Table storage (on Azurite) behave alike."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from kernel.ports import AlreadyExists, NotFound, PreconditionFailed, TableStore


def _table(unique: str) -> str:
    return f"t{unique}"


async def test_is_a_table_store(table_store: TableStore) -> None:
    assert isinstance(table_store, TableStore)


async def test_insert_get_and_already_exists(table_store: TableStore, unique: str) -> None:
    table = _table(unique)
    etag = await table_store.insert(table, {"PartitionKey": "cfo", "RowKey": "0001", "text": "hello"})
    assert isinstance(etag, str) and etag
    entity = await table_store.get(table, "cfo", "0001")
    assert entity == {"PartitionKey": "cfo", "RowKey": "0001", "text": "hello", "etag": etag}
    with pytest.raises(AlreadyExists):
        await table_store.insert(table, {"PartitionKey": "cfo", "RowKey": "0001", "text": "again"})
    assert (await table_store.get(table, "cfo", "0001"))["text"] == "hello"


async def test_get_missing_entity_or_table_is_not_found(table_store: TableStore, unique: str) -> None:
    with pytest.raises(NotFound):
        await table_store.get(_table(unique), "p", "r")
    await table_store.insert(_table(unique), {"PartitionKey": "p", "RowKey": "r"})
    with pytest.raises(NotFound):
        await table_store.get(_table(unique), "p", "other")


async def test_upsert_replaces_every_property(table_store: TableStore, unique: str) -> None:
    table = _table(unique)
    first = await table_store.upsert(table, {"PartitionKey": "p", "RowKey": "r", "a": 1, "b": 2})
    second = await table_store.upsert(table, {"PartitionKey": "p", "RowKey": "r", "a": 3})
    assert first != second
    entity = await table_store.get(table, "p", "r")
    assert entity == {"PartitionKey": "p", "RowKey": "r", "a": 3, "etag": second}


async def test_update_with_the_current_etag_wins_and_a_stale_one_fails(table_store: TableStore, unique: str) -> None:
    table = _table(unique)
    etag = await table_store.insert(table, {"PartitionKey": "p", "RowKey": "r", "count": 1})
    read = await table_store.get(table, "p", "r")
    read["count"] += 1
    newer = await table_store.update(table, read, etag=read["etag"])  # the "etag" key in the entity is ignored
    assert newer != etag
    with pytest.raises(PreconditionFailed):
        await table_store.update(table, {"PartitionKey": "p", "RowKey": "r", "count": 99}, etag=etag)
    assert (await table_store.get(table, "p", "r"))["count"] == 2
    with pytest.raises(NotFound):
        await table_store.update(table, {"PartitionKey": "p", "RowKey": "absent"}, etag=etag)


async def test_two_concurrent_writers_one_wins(table_store: TableStore, unique: str) -> None:
    table = _table(unique)
    etag = await table_store.insert(table, {"PartitionKey": "agent", "RowKey": "state", "owner": "nobody"})
    results = await asyncio.gather(
        table_store.update(table, {"PartitionKey": "agent", "RowKey": "state", "owner": "a"}, etag=etag),
        table_store.update(table, {"PartitionKey": "agent", "RowKey": "state", "owner": "b"}, etag=etag),
        return_exceptions=True,
    )
    won = [i for i, r in enumerate(results) if isinstance(r, str)]
    lost = [r for r in results if isinstance(r, PreconditionFailed)]
    assert len(won) == 1 and len(lost) == 1
    entity = await table_store.get(table, "agent", "state")
    assert entity["owner"] == "ab"[won[0]] and entity["etag"] == results[won[0]]


async def test_scalar_types_round_trip(table_store: TableStore, unique: str) -> None:
    table = _table(unique)
    moment = datetime(2024, 2, 29, 23, 59, 58, 123456, tzinfo=timezone(timedelta(hours=2)))
    entity = {
        "PartitionKey": "types", "RowKey": "1",
        "text": "héllo ✓", "empty": "", "small": 42, "negative": -7, "big": 2**40, "huge": -(2**63),
        "ratio": 0.1, "whole_float": 2.0, "yes": True, "no": False, "when": moment, "raw": b"\x00\xffbin",
        "nothing": None,
    }
    await table_store.insert(table, entity)
    got = await table_store.get(table, "types", "1")
    assert "nothing" not in got  # None means "no such property"
    for name in ("text", "empty", "small", "negative", "big", "huge", "ratio", "whole_float", "yes", "no", "raw"):
        assert got[name] == entity[name] and type(got[name]) is type(entity[name]), name
    assert got["when"] == moment and got["when"].utcoffset() == timedelta(0)
    assert type(got["when"]) is datetime


async def test_query_ranges_and_limit(table_store: TableStore, unique: str) -> None:
    table = _table(unique)
    for key in ["0003", "0001", "0005", "0002", "0004"]:
        await table_store.insert(table, {"PartitionKey": "turns", "RowKey": key, "n": int(key)})
    await table_store.insert(table, {"PartitionKey": "other", "RowKey": "0001"})

    def keys(entities: list[dict[str, object]]) -> list[object]:
        return [e["RowKey"] for e in entities]

    assert keys(await table_store.query(table, "turns")) == ["0001", "0002", "0003", "0004", "0005"]
    assert keys(await table_store.query(table, "turns", row_key_from="0002", row_key_to="0004")) == ["0002", "0003"]
    assert keys(await table_store.query(table, "turns", row_key_from="0004")) == ["0004", "0005"]
    assert keys(await table_store.query(table, "turns", row_key_to="0002")) == ["0001"]
    assert keys(await table_store.query(table, "turns", limit=2)) == ["0001", "0002"]
    assert keys(await table_store.query(table, "turns", row_key_from="0003", limit=10)) == ["0003", "0004", "0005"]
    everything = await table_store.query(table, "turns")
    assert all(isinstance(e["etag"], str) and e["n"] == int(str(e["RowKey"])) for e in everything)
    assert await table_store.query(table, "nobody") == []
    assert await table_store.query(f"missing{unique}", "turns") == []


async def test_delete_plain_and_conditional(table_store: TableStore, unique: str) -> None:
    table = _table(unique)
    old = await table_store.insert(table, {"PartitionKey": "p", "RowKey": "r", "v": 1})
    current = await table_store.upsert(table, {"PartitionKey": "p", "RowKey": "r", "v": 2})
    with pytest.raises(PreconditionFailed):
        await table_store.delete(table, "p", "r", etag=old)
    await table_store.delete(table, "p", "r", etag=current)
    with pytest.raises(NotFound):
        await table_store.get(table, "p", "r")
    await table_store.delete(table, "p", "r")  # deleting what is not there is not an error
    await table_store.insert(table, {"PartitionKey": "p", "RowKey": "s"})
    await table_store.delete(table, "p", "s")
    assert await table_store.query(table, "p") == []


async def test_query_below_finds_older_datetimes_and_smaller_numbers_across_partitions(
        table_store: TableStore, unique: str) -> None:
    table = _table(unique)
    now = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    rows = {
        ("a", "old"): {"expires": now - timedelta(days=2), "at": 100.5},
        ("b", "just-before"): {"expires": now - timedelta(microseconds=1), "at": 199.0},
        ("b", "at-the-bound"): {"expires": now, "at": 200.0},
        ("c", "later"): {"expires": now + timedelta(hours=1), "at": 300.25},
        ("c", "text"): {"expires": "2000-01-01T00:00:00.000000Z", "at": "100"},  # other kinds never match
        ("d", "none"): {"other": 1},
    }
    for (pk, rk), properties in rows.items():
        await table_store.insert(table, {"PartitionKey": pk, "RowKey": rk, **properties})

    expired = await table_store.query_below(table, "expires", now)
    assert sorted((e["PartitionKey"], e["RowKey"]) for e in expired) == [("a", "old"), ("b", "just-before")]
    assert all(e["etag"] for e in expired)
    by_number = await table_store.query_below(table, "at", 200.0)
    assert sorted(e["RowKey"] for e in by_number) == ["just-before", "old"]
    assert len(await table_store.query_below(table, "at", 1000.0, limit=1)) == 1
    assert await table_store.query_below(table, "expires", now - timedelta(days=3)) == []
    assert await table_store.query_below(_table(unique + "x"), "expires", now) == []  # no such table


@pytest.mark.parametrize("name, below, error", [
    ("PartitionKey", 1.0, ValueError), ("bad name", 1.0, ValueError),
    ("at", datetime(2026, 1, 1), ValueError), ("at", "1", TypeError), ("at", float("nan"), TypeError),
])
async def test_query_below_rejects_bad_arguments_naming_them(table_store: TableStore, unique: str,
                                                             name: str, below: object, error: type) -> None:
    with pytest.raises(error, match="query_below|property"):
        await table_store.query_below(_table(unique), name, below)  # type: ignore[arg-type]


async def test_table_names_are_case_insensitive(table_store: TableStore, unique: str) -> None:
    await table_store.insert(f"Mixed{unique}", {"PartitionKey": "p", "RowKey": "r"})
    assert (await table_store.get(f"mixed{unique}", "p", "r"))["RowKey"] == "r"


@pytest.mark.parametrize(
    "entity, error",
    [
        ({"PartitionKey": "a/b", "RowKey": "r"}, ValueError),
        ({"PartitionKey": "p", "RowKey": "r#1"}, ValueError),
        ({"PartitionKey": "p"}, ValueError),
        ({"PartitionKey": "p", "RowKey": "r", "when": datetime(2024, 1, 1)}, ValueError),
        ({"PartitionKey": "p", "RowKey": "r", "items": [1, 2]}, TypeError),
        ({"PartitionKey": "p", "RowKey": "r", "too_big": 2**64}, ValueError),
        ({"PartitionKey": "p", "RowKey": "r", "bad name": 1}, ValueError),
    ],
)
async def test_invalid_entities_are_rejected_before_any_call(table_store: TableStore, unique: str,
                                                             entity: dict[str, object], error: type) -> None:
    with pytest.raises(error):
        await table_store.insert(_table(unique), entity)


@pytest.mark.parametrize("table", ["1abc", "ab", "has-hyphen", "tables"])
async def test_invalid_table_names_are_rejected(table_store: TableStore, table: str) -> None:
    with pytest.raises(ValueError):
        await table_store.insert(table, {"PartitionKey": "p", "RowKey": "r"})
