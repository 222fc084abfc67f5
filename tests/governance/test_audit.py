"""The audit log against real table stores: the embedded SQLite one and Azure Table storage (Azurite).

Tampering is done the way an attacker with storage access would do it: through the table store
(or straight into the SQLite file), then ``verify`` must name the exact record. Faults are real
failures injected by a thin wrapper around the real store.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from kernel.governance.audit import (
    GENESIS_HASH,
    HASH_MISMATCH,
    MAX_DATA_BYTES,
    MISSING_RECORD,
    PREV_HASH_UNLINKED,
    SEQ_GAP,
    AuditChainBroken,
    AuditContention,
    AuditLog,
    AuditRecord,
    record_hash,
)
from kernel.governance.redaction import canonical_json, digest
from kernel.ports import AlreadyExists
from tests.adapters.conftest import azurite  # noqa: F401  (the session's Azurite, for the "azure" backend)


# ----------------------------------------------------------------------------------------------
# Backends: several store objects on one embedded SQLite file, or on one Azurite
# ----------------------------------------------------------------------------------------------


@dataclass
class Backend:
    kind: str
    table: str
    make: Callable[[], Any]
    stores: list[Any] = field(default_factory=list)

    def store(self) -> Any:
        """A new store object on the same data, as another function instance would have."""
        store = self.make()
        self.stores.append(store)
        return store

    def log(self, store: Any = None, **options: Any) -> AuditLog:
        return AuditLog(store if store is not None else self.store(), table=self.table, **options)


@pytest.fixture(params=["embedded", "azure"])
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Backend]:
    if request.param == "embedded":
        from kernel.adapters.embedded_table import EmbeddedTableStore

        path = tmp_path / "tables.sqlite"

        def make() -> Any:
            return EmbeddedTableStore(path)
    else:
        from kernel.adapters.azure_table import AzureTableStore

        connection = request.getfixturevalue("azurite")

        def make() -> Any:
            return AzureTableStore(connection_string=connection)
    backend = Backend(request.param, f"audit{uuid.uuid4().hex[:12]}", make)
    try:
        yield backend
    finally:
        for store in backend.stores:
            await store.close()


async def rows(store: Any, table: str, chain: str) -> list[dict[str, Any]]:
    return [row for row in await store.query(table, chain) if row["RowKey"] != "head"]


async def tamper(store: Any, table: str, chain: str, seq: int, change: Callable[[dict[str, Any]], None],
                 *, rehash: bool = False) -> None:
    """Rewrite one stored record in place; with ``rehash``, also give it a hash that fits its new content."""
    entity = await store.get(table, chain, f"{seq:012d}")
    change(entity)
    if rehash:
        entity["hash"] = record_hash({**entity, "chain": entity["PartitionKey"], "data": json.loads(entity["data"])})
    await store.upsert(table, entity)


async def fill(log: AuditLog, chain: str, count: int) -> list[AuditRecord]:
    return [await log.append(chain, "tool.call", actor="agent", subject=f"call-{n}", data={"n": n})
            for n in range(1, count + 1)]


def set_data(value: Any) -> Callable[[dict[str, Any]], None]:
    def change(entity: dict[str, Any]) -> None:
        entity["data"] = canonical_json(value)
    return change


# ----------------------------------------------------------------------------------------------
# Appending and reading
# ----------------------------------------------------------------------------------------------


async def test_append_read_and_verify_several_chains(backend: Backend) -> None:
    moments = iter(datetime(2025, 1, 2, 3, 4, second, tzinfo=timezone.utc) for second in range(60))
    log = backend.log(clock=lambda: next(moments))
    assert await log.chains() == []
    assert (await log.verify()).ok

    first = await log.append("cfo", "tool.call", actor="cfo", subject="erp.lookup", data={"vendor": "Acme", "n": 1})
    await log.append("platform", "config.changed", actor="operator", data={"agent": "cfo", "field": "tools"})
    second = await log.append("cfo", "tool.denied", actor="cfo", data={"tool": "erp.pay"})
    await log.append("finance:cfo", "approval.requested", actor="cfo", data={"amount": 1200.5, "items": [1, 2]})
    third = await log.append("cfo", "approval.decided", actor="alice@example.com", data={"approved": True})

    assert first.seq == 1 and first.prev_hash == GENESIS_HASH
    assert first.time == "2025-01-02T03:04:00.000000+00:00"
    assert (second.seq, second.prev_hash) == (2, first.hash)
    assert (third.seq, third.prev_hash) == (3, second.hash)
    assert first.hash == first.computed_hash() and len(first.hash) == 64
    assert first.data_sha256 == digest({"vendor": "Acme", "n": 1}) and first.truncated is False

    stored = await backend.log().records("cfo")
    assert stored == [first, second, third]
    assert [r.kind for r in stored] == ["tool.call", "tool.denied", "approval.decided"]
    assert stored[0].subject == "erp.lookup" and stored[1].subject is None
    assert await log.records("cfo", after_seq=1, limit=1) == [second]
    assert await log.records("cfo", after_seq=3) == []
    assert await log.records("nobody") == []
    assert await log.chains() == ["cfo", "finance:cfo", "platform"]

    report = await log.verify()
    assert report.ok and report.records == 5 and report.breaks == []
    assert {c.chain: c.records for c in report.chains} == {"cfo": 3, "finance:cfo": 1, "platform": 1}
    json.dumps(report.to_dict())
    single = await log.verify("cfo")
    assert single.ok and single.records == 3 and single.chains[0].last_hash == third.hash

    as_dict = third.to_dict()
    as_dict["data"]["approved"] = False  # a copy: the record is unchanged
    assert third.data == {"approved": True} and record_hash(third.to_dict()) == third.hash


async def test_data_is_redacted_before_it_is_stored(backend: Backend) -> None:
    store = backend.store()
    record = await backend.log(store).append("cfo", "tool.call", actor="cfo",
                                             data={"url": "https://erp", "headers": {"Authorization": "Bearer s3cr3t"},
                                                   "api_key": "sk-live-123", "max_tokens": 50})
    assert record.data == {"url": "https://erp", "headers": {"Authorization": "[redacted]"},
                           "api_key": "[redacted]", "max_tokens": 50}
    raw = json.dumps(await rows(store, backend.table, "cfo"))
    assert "s3cr3t" not in raw and "sk-live-123" not in raw

    plain = await backend.log(store, redaction=None).append("cfo", "admin.action", actor="op", data={"token": "t"})
    assert plain.data == {"token": "t"}
    assert (await backend.log(store).verify()).ok


async def test_large_data_is_truncated_with_the_digest_of_the_whole(backend: Backend) -> None:
    store = backend.store()
    log = backend.log(store)
    cases = {
        "ascii": {"blob": "x" * 200_000},
        "escaped": {"quotes": '"\\\x01' * 40_000},  # every character grows when escaped again
        "astral": {"emoji": "\U0001F600" * 40_000},  # two UTF-16 units each
    }
    for seq, (name, data) in enumerate(cases.items(), start=1):
        record = await log.append("big", "tool.call", actor="agent", subject=name, data=data)
        full = canonical_json(data)
        assert record.seq == seq and record.truncated is True
        assert record.data_sha256 == digest(data)
        assert record.data["full_bytes"] == len(full.encode("utf-8"))
        assert full.startswith(record.data["preview"]) and len(record.data["preview"]) > 1000
        entity = await store.get(backend.table, "big", f"{seq:012d}")
        assert len(entity["data"].encode("utf-16-le")) <= MAX_DATA_BYTES
    small = await log.append("big", "tool.call", actor="agent", data={"blob": "x" * 1000})
    assert small.truncated is False and small.data == {"blob": "x" * 1000}
    assert (await log.verify("big")).ok and (await log.verify("big")).records == 4


async def test_bad_arguments_are_refused_before_anything_is_written(backend: Backend) -> None:
    store = backend.store()
    log = backend.log(store)
    with pytest.raises(ValueError, match="audit chain"):
        await log.append("a/b", "tool.call", actor="x", data={})
    with pytest.raises(ValueError, match="audit kind"):
        await log.append("cfo", "Tool Call", actor="x", data={})
    with pytest.raises(ValueError, match="actor"):
        await log.append("cfo", "tool.call", actor="", data={})
    with pytest.raises(TypeError, match="mapping"):
        await log.append("cfo", "tool.call", actor="x", data=["not", "a", "mapping"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not plain JSON"):
        await log.append("cfo", "tool.call", actor="x", data={"s": {1, 2}})
    with pytest.raises(ValueError, match="not plain JSON"):
        await log.append("cfo", "tool.call", actor="x", data={"f": float("nan")})
    with pytest.raises(ValueError, match="timezone-aware"):
        await backend.log(store, clock=lambda: datetime(2025, 1, 1)).append("cfo", "tool.call", actor="x", data={})
    assert await log.chains() == [] and await log.records("cfo") == []


async def test_tail_follows_new_records_across_chains(backend: Backend) -> None:
    store = backend.store()
    writer = backend.log(store)
    await writer.append("a", "tool.call", actor="x", data={"n": 1})

    async def follow(chain: str | None, want: int, after_seq: int = 0) -> list[tuple[str, int]]:
        got: list[tuple[str, int]] = []
        async for record in backend.log(store).tail(chain, after_seq=after_seq, poll_interval=0.01):
            got.append((record.chain, record.seq))
            if len(got) == want:
                return got
        raise AssertionError("unreachable")

    everything = asyncio.create_task(follow(None, 4))
    only_a = asyncio.create_task(follow("a", 2, after_seq=1))
    await asyncio.sleep(0.05)
    await writer.append("b", "tool.call", actor="x", data={"n": 1})
    await writer.append("a", "tool.call", actor="x", data={"n": 2})
    await writer.append("a", "tool.call", actor="x", data={"n": 3})
    seen = await asyncio.wait_for(everything, 10)
    assert sorted(seen) == [("a", 1), ("a", 2), ("a", 3), ("b", 1)]
    assert await asyncio.wait_for(only_a, 10) == [("a", 2), ("a", 3)]


# ----------------------------------------------------------------------------------------------
# Tampering
# ----------------------------------------------------------------------------------------------


async def test_altered_data_is_a_hash_mismatch_at_that_record(backend: Backend) -> None:
    store = backend.store()
    log = backend.log(store)
    await fill(log, "cfo", 6)
    await fill(log, "platform", 2)
    await tamper(store, backend.table, "cfo", 4, set_data({"n": 400}))

    report = await backend.log().verify()
    assert not report.ok
    assert [(b.chain, b.seq, b.problem) for b in report.breaks] == [("cfo", 4, HASH_MISMATCH)]
    by_chain = {c.chain: c for c in report.chains}
    assert by_chain["cfo"].records == 3 and by_chain["platform"].ok and by_chain["platform"].records == 2
    assert report.records == 5


@pytest.mark.parametrize("field_name, value", [("actor", "someone-else"), ("kind", "admin.action"),
                                                ("time", "2020-01-01T00:00:00.000000+00:00"), ("subject", None)])
async def test_any_altered_field_is_a_hash_mismatch(backend: Backend, field_name: str, value: Any) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 3)
    await tamper(store, backend.table, "cfo", 2, lambda e: e.__setitem__(field_name, value))
    (broken,) = (await backend.log(store).verify("cfo")).breaks
    assert (broken.seq, broken.problem) == (2, HASH_MISMATCH)


async def test_altered_record_with_a_recomputed_hash_breaks_the_next_link(backend: Backend) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 5)
    await tamper(store, backend.table, "cfo", 2, set_data({"n": 200}), rehash=True)
    (broken,) = (await backend.log(store).verify("cfo")).breaks
    assert (broken.seq, broken.problem) == (3, PREV_HASH_UNLINKED)


async def test_rewritten_last_record_is_caught_by_the_head(backend: Backend) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 3)
    await tamper(store, backend.table, "cfo", 3, set_data({"n": 300}), rehash=True)
    (broken,) = (await backend.log(store).verify("cfo")).breaks
    assert (broken.seq, broken.problem) == (3, HASH_MISMATCH) and "head" in broken.detail
    with pytest.raises(AuditChainBroken):
        await backend.log(store).append("cfo", "tool.call", actor="x", data={})


async def test_changed_prev_hash_is_caught(backend: Backend) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 4)
    other = "ab" * 32
    await tamper(store, backend.table, "cfo", 3, lambda e: e.__setitem__("prev_hash", other))
    (broken,) = (await backend.log(store).verify("cfo")).breaks
    assert (broken.seq, broken.problem) == (3, HASH_MISMATCH)

    await tamper(store, backend.table, "cfo", 3, lambda e: None, rehash=True)  # now with a hash that fits
    (broken,) = (await backend.log(store).verify("cfo")).breaks
    assert (broken.seq, broken.problem) == (3, PREV_HASH_UNLINKED)

    await tamper(store, backend.table, "cfo", 1, lambda e: e.__setitem__("prev_hash", other), rehash=True)
    (broken,) = (await backend.log(store).verify("cfo")).breaks
    assert (broken.seq, broken.problem) == (1, PREV_HASH_UNLINKED) and "genesis" in broken.detail


@pytest.mark.parametrize("deleted", [1, 3])
async def test_deleted_record_is_a_seq_gap(backend: Backend, deleted: int) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 5)
    await store.delete(backend.table, "cfo", f"{deleted:012d}")
    report = await backend.log(store).verify("cfo")
    (broken,) = report.breaks
    assert (broken.seq, broken.problem) == (deleted, SEQ_GAP)
    assert report.records == deleted - 1


async def test_deleted_last_records_are_missing_and_appends_are_refused(backend: Backend) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 5)
    for seq in (4, 5):
        await store.delete(backend.table, "cfo", f"{seq:012d}")
    report = await backend.log(store).verify("cfo")
    (broken,) = report.breaks
    assert (broken.seq, broken.problem, report.records) == (4, MISSING_RECORD, 3)
    with pytest.raises(AuditChainBroken, match="record 5"):
        await backend.log(store).append("cfo", "tool.call", actor="x", data={})
    assert len(await rows(store, backend.table, "cfo")) == 3  # nothing written over the gap


async def test_record_moved_to_another_row_is_caught(backend: Backend) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 3)
    second = await store.get(backend.table, "cfo", f"{2:012d}")
    await store.upsert(backend.table, {**second, "RowKey": f"{3:012d}"})  # a valid record, in the wrong row
    (broken,) = (await backend.log(store).verify("cfo")).breaks
    assert (broken.seq, broken.problem) == (3, SEQ_GAP)


async def test_tampering_in_the_sqlite_file_is_caught(tmp_path: Path) -> None:
    from kernel.adapters.embedded_table import EmbeddedTableStore

    path = tmp_path / "tables.sqlite"
    store = EmbeddedTableStore(path)
    try:
        await fill(AuditLog(store), "cfo", 4)
        with sqlite3.connect(path) as db:
            (properties,) = db.execute("SELECT properties FROM aos_table_entities WHERE tbl='audit' AND pk='cfo' "
                                       "AND rk='000000000002'").fetchone()
            changed = json.loads(properties)
            changed["data"] = ["s", canonical_json({"n": 2, "approved": True})]
            db.execute("UPDATE aos_table_entities SET properties=? WHERE tbl='audit' AND pk='cfo' "
                       "AND rk='000000000002'", (json.dumps(changed),))
        (broken,) = (await AuditLog(store).verify()).breaks
        assert (broken.chain, broken.seq, broken.problem) == ("cfo", 2, HASH_MISMATCH)
    finally:
        await store.close()


# ----------------------------------------------------------------------------------------------
# Concurrency and faults
# ----------------------------------------------------------------------------------------------


async def test_concurrent_writers_make_one_unbroken_chain(backend: Backend) -> None:
    writers, each = 25, 12
    stores = [backend.store() for _ in range(4)]
    for store in stores:  # open them one by one: EmbeddedTableStores opening a new file at once can hit
        await store.query(backend.table, "warm-up")  # "database is locked" (switching it to WAL)

    async def writer(w: int) -> list[AuditRecord]:
        log = backend.log(stores[w % len(stores)])  # one AuditLog per writer, as per function instance
        return [await log.append("shared", "tool.call", actor=f"writer-{w}", data={"w": w, "n": n})
                for n in range(each)]

    returned = await asyncio.gather(*(writer(w) for w in range(writers)))
    total = writers * each
    stored = await backend.log().records("shared")
    assert [r.seq for r in stored] == list(range(1, total + 1))
    assert len({r.id for r in stored}) == total
    assert sorted((r.data["w"], r.data["n"]) for r in stored) == [(w, n) for w in range(writers) for n in range(each)]
    for previous, record in zip([None, *stored], stored):
        assert record.prev_hash == (previous.hash if previous else GENESIS_HASH)
    by_id = {r.id: r for r in stored}
    for mine in returned:
        assert [by_id[r.id] for r in mine] == mine  # what each append returned is what was stored
        assert [r.seq for r in mine] == sorted(r.seq for r in mine)  # a writer's records keep its order
    report = await backend.log().verify()
    assert report.ok and report.records == total


class FailingHead:
    """A real table store that fails the next write of a chain's head row with ``error``."""

    def __init__(self, inner: Any, error: BaseException) -> None:
        self._inner, self._error = inner, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _fail(self, entity: dict[str, Any]) -> None:
        if entity["RowKey"] == "head" and self._error is not None:
            error, self._error = self._error, None
            raise error

    async def insert(self, table: str, entity: dict[str, Any]) -> str:
        self._fail(entity)
        return await self._inner.insert(table, entity)

    async def update(self, table: str, entity: dict[str, Any], *, etag: str) -> str:
        self._fail(entity)
        return await self._inner.update(table, entity, etag=etag)


class Crash(BaseException):
    """The process dying mid-append (not an ``Exception``: nothing may swallow it)."""


@pytest.mark.parametrize("existing", [0, 3])  # the crash hits a head insert (new chain) or a head update
async def test_crash_between_insert_and_head_update_loses_nothing(backend: Backend, existing: int) -> None:
    store = backend.store()
    before = await fill(backend.log(store), "cfo", existing)
    with pytest.raises(Crash):
        await backend.log(FailingHead(store, Crash())).append("cfo", "tool.call", actor="dying", data={"n": "last"})
    stored = await backend.log(store).records("cfo")
    assert [r.seq for r in stored] == list(range(1, existing + 2)) and stored[-1].actor == "dying"
    after = await backend.log(backend.store()).append("cfo", "tool.call", actor="next", data={})
    assert after.seq == existing + 2 and after.prev_hash == stored[-1].hash
    report = await backend.log(store).verify("cfo")
    assert report.ok and report.records == existing + 2
    assert [r.hash for r in (await backend.log(store).records("cfo"))[:existing]] == [r.hash for r in before]


async def test_failed_head_update_is_logged_without_secrets_and_ignored(backend: Backend,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 2)
    failing = FailingHead(store, OSError("connection reset; AccountKey=c2VjcmV0a2V5"))
    with caplog.at_level(logging.WARNING, logger="kernel.governance.audit"):
        record = await backend.log(failing).append("cfo", "tool.call", actor="x", data={})
    assert record.seq == 3
    assert "head of chain 'cfo' not advanced to record 3" in caplog.text and "c2VjcmV0a2V5" not in caplog.text
    assert (await store.get(backend.table, "cfo", "head"))["seq"] == 2  # the hint is behind ...
    assert (await backend.log(store).append("cfo", "tool.call", actor="x", data={})).seq == 4  # ... and harmless
    assert (await store.get(backend.table, "cfo", "head"))["seq"] == 4
    assert (await backend.log(store).verify()).ok


class Interloper:
    """A real table store on which a rival always appends to the chain just before our insert lands."""

    def __init__(self, inner: Any, rival: AuditLog, table: str) -> None:
        self._inner, self._rival, self._table = inner, rival, table
        self.rival_appends = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def insert(self, table: str, entity: dict[str, Any]) -> str:
        if table == self._table and entity["RowKey"] != "head":
            await self._rival.append(entity["PartitionKey"], "tool.call", actor="rival", data={})
            self.rival_appends += 1
        return await self._inner.insert(table, entity)


async def test_a_writer_that_keeps_losing_gives_up_with_a_clear_error(backend: Backend) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 1)
    interloper = Interloper(store, backend.log(store), backend.table)
    with pytest.raises(AuditContention, match="3 times"):
        await backend.log(interloper, max_attempts=3).append("cfo", "tool.call", actor="victim", data={})
    stored = await backend.log(store).records("cfo")
    assert interloper.rival_appends == 3 and [r.actor for r in stored] == ["agent", "rival", "rival", "rival"]
    assert (await backend.log(store).verify()).ok


class LostResponse:
    """A real table store whose next record insert succeeds but reports ``AlreadyExists`` (an SDK retry)."""

    def __init__(self, inner: Any) -> None:
        self._inner, self.armed = inner, True

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def insert(self, table: str, entity: dict[str, Any]) -> str:
        etag = await self._inner.insert(table, entity)
        if self.armed and entity["RowKey"] != "head" and table.startswith("audit") and "chains" not in table:
            self.armed = False
            raise AlreadyExists("the retried request found the entity its first attempt created")
        return etag


async def test_a_lost_insert_response_does_not_duplicate_the_record(backend: Backend) -> None:
    store = backend.store()
    await fill(backend.log(store), "cfo", 2)
    flaky = LostResponse(store)
    record = await backend.log(flaky).append("cfo", "tool.call", actor="once", data={})
    assert not flaky.armed and record.seq == 3
    stored = await backend.log(store).records("cfo")
    assert [r.actor for r in stored] == ["agent", "agent", "once"] and stored[-1] == record
    assert (await backend.log(store).append("cfo", "tool.call", actor="x", data={})).seq == 4
    assert (await backend.log(store).verify()).ok
