"""A tamper-evident audit log: append-only, hash-chained records in table storage.

What a record is
    One thing that happened and who did it: ``kind`` (``tool.call``, ``approval.decided``, ...),
    ``actor``, optional ``subject``, JSON ``data``, the writer's UTC ``time``, a random ``id``. Records
    belong to a *chain* (an agent id, ``platform``, ``namespace:agent``) and are numbered 1, 2, ... in
    it. Each carries ``prev_hash``, the hash of the record before it (64 zeros for record 1), and
    ``hash``, the SHA-256 of the canonical JSON (sorted keys, compact) of every other field,
    ``chain``, ``seq`` and ``prev_hash`` included. Altering, removing or reordering a stored record
    therefore breaks a hash or a link that :meth:`AuditLog.verify` recomputes.

Data
    ``data`` goes through :func:`kernel.governance.redaction.redact` first (sensitive keys become
    ``"[redacted]"``; pass ``redaction=None`` to store it as given) and is kept as canonical JSON in
    one string property. ``data_sha256`` is always the digest of that full JSON. Table storage caps
    a string property at 64 KiB (UTF-16), so data whose JSON is larger than :data:`MAX_DATA_BYTES`
    is stored as ``{"preview": <its first characters>, "full_bytes": <UTF-8 size>}`` with
    ``truncated`` true: whoever holds the original can still prove it by its digest.

Storage layout (table ``audit`` by default)
    * Records: PartitionKey = chain, RowKey = seq zero-padded to 12 digits, so one ascending
      partition scan reads a chain in order. Properties: ``v, seq, id, time, kind, actor, subject,
      data, data_sha256, truncated, prev_hash, hash``.
    * Head hint: the row RowKey ``head`` in the same partition, ``{seq, hash, time}`` of a recent
      record. Digits sort before letters, so record scans stop at RowKey ``":"`` and never see it;
      keeping it in the chain's own partition spreads head writes over chains instead of putting
      every append's head write on one hot partition.
    * Chain index: table ``<table>chains``, PartitionKey ``chains``, RowKey = chain. The
      ``TableStore`` port queries one partition at a time and cannot list partitions, so this row is
      how :meth:`AuditLog.chains` (and ``verify()`` of every chain) finds them. It is written before
      a chain's first record, so no chain with records is ever missing from it.

Concurrency
    Any number of writers (function instances, machines, each with its own ``AuditLog``) may
    append to one chain at once. The create-only insert of row ``seq + 1`` is the serialization
    point: exactly one writer creates it; the others get ``AlreadyExists``, read the rows after
    the seq they built on, and retry on top of the newest one (with its hash as ``prev_hash``),
    with jittered backoff after the second loss, up to ``max_attempts`` (then
    :class:`AuditContention`; nothing was written by that call). No record is ever updated, so two
    writers cannot both hold seq ``n``, and each record's ``prev_hash`` is the hash of the record
    its writer read at ``n - 1``: the chain cannot fork.

    The head is only a hint: after its insert a writer advances it with the ETag it read it with
    (a create when there is none), so it never moves backwards, and any failure there is logged
    and ignored. Writers and readers start at the head and read forward to the real end, so a
    writer that crashes between its insert and the head update loses nothing: the record is
    stored, and the next append moves the head past it. If an insert's response is lost and the
    SDK's retry reports ``AlreadyExists``, the writer finds its own ``id`` in that row and returns
    it instead of appending the record twice.

    A head pointing at a record that is gone, or whose hash differs, can only come from tampering
    (the head is written after the record, from the record): :meth:`AuditLog.append` then raises
    :class:`AuditChainBroken` rather than write over the evidence. See docs/audit.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import re
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Any

from kernel.adapters import redact as redact_text
from kernel.governance.redaction import DEFAULT_RULES, RedactionRules, canonical_json, digest, redact
from kernel.ports import AlreadyExists, NotFound, PreconditionFailed, TableStore, check_key, check_table_name

__all__ = [
    "GENESIS_HASH",
    "HASH_MISMATCH",
    "KINDS",
    "MAX_DATA_BYTES",
    "MISSING_RECORD",
    "PREV_HASH_UNLINKED",
    "SEQ_GAP",
    "AuditChainBroken",
    "AuditContention",
    "AuditLog",
    "AuditRecord",
    "Break",
    "ChainReport",
    "VerifyReport",
    "record_hash",
]

log = logging.getLogger(__name__)

#: ``prev_hash`` of a chain's first record.
GENESIS_HASH = "0" * 64
#: Version of the record format and hash definition, stored (and hashed) as ``v``.
FORMAT_VERSION = 1
#: Largest stored ``data`` text, in UTF-16 bytes (how Table storage counts its 64 KiB limit).
MAX_DATA_BYTES = 60 * 1024
#: The kinds of record the platform writes; others are accepted if they look like ``a.b``.
KINDS = frozenset({
    "turn.decision", "tool.call", "tool.denied", "approval.requested", "approval.decided", "policy.refused",
    "policy.deferred", "config.added", "config.changed", "config.removed", "admin.pause", "admin.resume",
    "admin.retire", "admin.remember", "admin.update_goal", "audit.anchor",
})

# verify() problems
HASH_MISMATCH = "hash mismatch"
PREV_HASH_UNLINKED = "prev_hash does not link"
SEQ_GAP = "seq gap"
MISSING_RECORD = "missing record"

_SEQ_DIGITS = 12
_MAX_SEQ = 10**_SEQ_DIGITS - 1
_HEAD = "head"
_RECORDS_END = ":"  # the character after '9': an exclusive upper bound for record RowKeys
_INDEX_PARTITION = "chains"
_PAGE = 1000
_KIND = re.compile(r"^[a-z][a-z0-9_]*(?:\.[a-z0-9_]+)*$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HASHED = ("v", "chain", "seq", "id", "time", "kind", "actor", "subject", "data", "data_sha256", "truncated",
           "prev_hash")


class AuditContention(RuntimeError):
    """An append lost the race for the next seq ``max_attempts`` times; it wrote nothing."""


class AuditChainBroken(RuntimeError):
    """The chain's stored records disagree with its head: appending would cover up tampering."""


# ----------------------------------------------------------------------------------------------
# Records
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AuditRecord:
    """One appended record, as stored (``data`` is the redacted, possibly truncated form)."""

    chain: str
    seq: int
    id: str
    time: str
    kind: str
    actor: str
    subject: str | None
    data: Any
    data_sha256: str
    truncated: bool
    prev_hash: str
    hash: str
    v: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        """Every field, as plain JSON values (a copy: changing it does not change the record)."""
        return json.loads(json.dumps(asdict(self)))

    def computed_hash(self) -> str:
        """The hash these fields should have; differs from :attr:`hash` if the record was altered."""
        return record_hash({name: getattr(self, name) for name in _HASHED})  # digest() copies nothing


def record_hash(fields: Mapping[str, Any]) -> str:
    """SHA-256 of the canonical JSON of a record's hashed fields (all but ``hash``)."""
    return digest({name: fields.get(name) for name in _HASHED})


class _Malformed(ValueError):
    pass


def _seq_key(seq: int) -> str:
    return f"{seq:0{_SEQ_DIGITS}d}"


def _key_seq(row_key: Any) -> int | None:
    if isinstance(row_key, str) and len(row_key) == _SEQ_DIGITS and row_key.isascii() and row_key.isdigit():
        return int(row_key)
    return None


def _entity(record: AuditRecord) -> dict[str, Any]:
    return {
        "PartitionKey": record.chain, "RowKey": _seq_key(record.seq), "v": record.v, "seq": record.seq,
        "id": record.id, "time": record.time, "kind": record.kind, "actor": record.actor,
        "subject": record.subject, "data": canonical_json(record.data), "data_sha256": record.data_sha256,
        "truncated": record.truncated, "prev_hash": record.prev_hash, "hash": record.hash,
    }


def _record(entity: Mapping[str, Any]) -> AuditRecord:
    """An entity as a record; :class:`_Malformed` naming what is wrong with it."""
    def field_(name: str, kind: type | tuple[type, ...], optional: bool = False) -> Any:
        value = entity.get(name)
        if value is None and optional:
            return None
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _Malformed(f"property {name!r} is missing or not a {getattr(kind, '__name__', kind)}")
        return value

    try:
        data = json.loads(field_("data", str))
    except ValueError:
        raise _Malformed("property 'data' is not JSON") from None
    return AuditRecord(
        chain=field_("PartitionKey", str), seq=field_("seq", int), id=field_("id", str), time=field_("time", str),
        kind=field_("kind", str), actor=field_("actor", str), subject=field_("subject", str, optional=True),
        data=data, data_sha256=field_("data_sha256", str), truncated=field_("truncated", bool),
        prev_hash=field_("prev_hash", str), hash=field_("hash", str), v=field_("v", int),
    )


def _fit(full: str) -> tuple[Any, bool]:
    """The data value to store for canonical JSON ``full``, and whether it had to be truncated."""
    if _utf16_size(full) <= MAX_DATA_BYTES:
        return json.loads(full), False
    full_bytes = len(full.encode("utf-8"))
    cut = min(len(full), MAX_DATA_BYTES // 2)
    while True:
        stored = {"preview": full[:cut], "full_bytes": full_bytes}
        size = _utf16_size(canonical_json(stored))
        if size <= MAX_DATA_BYTES:
            return stored, True
        cut = max(0, cut * MAX_DATA_BYTES // size - 64)  # escaping made it longer: shrink and retry


def _utf16_size(text: str) -> int:
    return len(text.encode("utf-16-le"))


# ----------------------------------------------------------------------------------------------
# Verification reports
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Break:
    """The first record of a chain that fails verification, and why."""

    chain: str
    seq: int
    problem: str  # HASH_MISMATCH, PREV_HASH_UNLINKED, SEQ_GAP or MISSING_RECORD
    detail: str


@dataclass(frozen=True)
class ChainReport:
    """One chain's verification: how many records checked out, and its first break if any."""

    chain: str
    records: int
    last_hash: str
    broken: Break | None = None

    @property
    def ok(self) -> bool:
        return self.broken is None


@dataclass(frozen=True)
class VerifyReport:
    """The result of :meth:`AuditLog.verify`: ok only if every chain is."""

    chains: tuple[ChainReport, ...]

    @property
    def ok(self) -> bool:
        return all(chain.ok for chain in self.chains)

    @property
    def records(self) -> int:
        """Records that verified (up to each chain's first break)."""
        return sum(chain.records for chain in self.chains)

    @property
    def breaks(self) -> list[Break]:
        return [chain.broken for chain in self.chains if chain.broken is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "records": self.records,
            "chains": [{**asdict(chain), "ok": chain.ok} for chain in self.chains],
        }


# ----------------------------------------------------------------------------------------------
# The log
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Tip:
    seq: int  # the last record's seq (0: no records)
    hash: str
    head_etag: str | None  # the head row's ETag when read (None: no head row)


class AuditLog:
    """Hash-chained audit records per chain through a :class:`TableStore` (see the module docstring)."""

    def __init__(self, tables: TableStore, *, table: str = "audit", clock: Callable[[], datetime] | None = None,
                 index_table: str | None = None, redaction: RedactionRules | None = DEFAULT_RULES,
                 max_attempts: int = 100) -> None:
        if isinstance(max_attempts, bool) or not isinstance(max_attempts, int) or max_attempts < 1:
            raise ValueError(f"max_attempts must be a positive integer, got {max_attempts!r}")
        self._tables = tables
        self.table = check_table_name(table)
        self.index_table = check_table_name(index_table or f"{table}chains")
        if self.index_table.lower() == self.table.lower():
            raise ValueError("the chain index needs a table of its own")
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._redaction = redaction
        self._max_attempts = max_attempts

    # -- writing --------------------------------------------------------------------------------

    async def append(self, chain: str, kind: str, *, actor: str, data: Mapping[str, Any],
                     subject: str | None = None) -> AuditRecord:
        """Append one record to ``chain`` and return it as stored.

        Safe to call from any number of writers at once (see the module docstring). Raises
        ``ValueError``/``TypeError`` for bad arguments or data that is not plain JSON,
        :class:`AuditContention` when other writers won ``max_attempts`` times in a row, and
        :class:`AuditChainBroken` when the chain shows signs of tampering.
        """
        chain = _check_chain(chain)
        if not isinstance(kind, str) or len(kind) > 64 or not _KIND.match(kind):
            raise ValueError(f"invalid audit kind {kind!r}: expected a dotted lowercase name such as 'tool.call'")
        actor = _check_text(actor, "actor")
        if subject is not None:
            subject = _check_text(subject, "subject")
        if not isinstance(data, Mapping):
            raise TypeError(f"audit data must be a mapping, got {type(data).__name__}")
        value = redact(data, self._redaction) if self._redaction is not None else data
        try:
            full = canonical_json(value)
        except (TypeError, ValueError) as error:
            raise ValueError(f"audit data for {kind!r} on chain {chain!r} is not plain JSON: {error}") from None
        stored, truncated = _fit(full)
        draft = AuditRecord(
            chain=chain, seq=0, id=uuid.uuid4().hex, time=_utc_iso(self._clock()), kind=kind, actor=actor,
            subject=subject, data=stored, data_sha256=hashlib.sha256(full.encode("utf-8")).hexdigest(),
            truncated=truncated, prev_hash=GENESIS_HASH, hash="",
        )

        tip = await self._tip(chain)
        if tip.seq == 0:
            await self._index(chain, draft.time)
        for attempt in range(1, self._max_attempts + 1):
            if tip.seq >= _MAX_SEQ:
                raise OverflowError(f"audit chain {chain!r} is full ({_MAX_SEQ} records)")
            record = replace(draft, seq=tip.seq + 1, prev_hash=tip.hash)
            record = replace(record, hash=record.computed_hash())
            try:
                await self._tables.insert(self.table, _entity(record))
            except AlreadyExists:
                if attempt >= 2:  # back off before reading the new end: reading first would make it stale
                    await asyncio.sleep(random.uniform(0, min(0.25, 0.005 * 2**attempt)))
                first, last = await self._edge(chain, after_seq=tip.seq)
                if first is not None and first.get("id") == record.id:
                    break  # our own insert, whose response was lost and retried by the SDK
                tip = _Tip(_row_seq(chain, last), str(last.get("hash")), tip.head_etag) if last is not None \
                    else await self._tip(chain)
                continue
            break
        else:
            raise AuditContention(
                f"could not append to audit chain {chain!r}: other writers took the next seq "
                f"{self._max_attempts} times in a row; nothing was written by this call"
            )
        await self._advance_head(record, tip)
        return record

    async def _tip(self, chain: str) -> _Tip:
        """The chain's last record: from the head hint forward (or from the start without one)."""
        try:
            head: dict[str, Any] | None = await self._tables.get(self.table, chain, _HEAD)
        except NotFound:
            head = None
        head_seq = head.get("seq") if head is not None else None
        if head is None or isinstance(head_seq, bool) or not isinstance(head_seq, int) or head_seq < 1:
            _, last = await self._edge(chain, after_seq=0)
        else:
            first, last = await self._edge(chain, after_seq=head_seq - 1)
            if first is None or _key_seq(first["RowKey"]) != head_seq or first.get("hash") != head.get("hash"):
                raise AuditChainBroken(
                    f"audit chain {chain!r} does not match its head (record {head_seq} is missing or was "
                    "rewritten); appends are refused so as not to cover it up: run `verify` and investigate"
                )
        etag = head["etag"] if head is not None else None
        if last is None:
            return _Tip(0, GENESIS_HASH, etag)
        return _Tip(_row_seq(chain, last), str(last.get("hash")), etag)

    async def _edge(self, chain: str, *, after_seq: int) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        """The first and last record rows after ``after_seq`` (``None, None`` when there are none)."""
        first = last = None
        async for row in self._scan(chain, after_seq):
            first = first or row
            last = row
        return first, last

    async def _scan(self, chain: str, after_seq: int) -> AsyncIterator[dict[str, Any]]:
        """Record rows after ``after_seq`` in RowKey order, a page at a time."""
        start = _seq_key(after_seq + 1)
        while True:
            try:
                rows = await self._tables.query(self.table, chain, row_key_from=start, row_key_to=_RECORDS_END,
                                                limit=_PAGE)
            except NotFound:
                return
            for row in rows:
                yield row
            if len(rows) < _PAGE:
                return
            start = rows[-1]["RowKey"] + " "  # the next possible key: ' ' is the lowest character a key may hold

    async def _index(self, chain: str, time: str) -> None:
        try:
            await self._tables.insert(self.index_table, {"PartitionKey": _INDEX_PARTITION, "RowKey": chain,
                                                         "created": time})
        except AlreadyExists:
            pass

    async def _advance_head(self, record: AuditRecord, tip: _Tip) -> None:
        """Move the head hint to ``record``; a hint, so failures are logged and ignored."""
        head = {"PartitionKey": record.chain, "RowKey": _HEAD, "seq": record.seq, "hash": record.hash,
                "time": record.time}
        try:
            if tip.head_etag is None:
                await self._tables.insert(self.table, head)
            else:
                await self._tables.update(self.table, head, etag=tip.head_etag)
        except (AlreadyExists, PreconditionFailed, NotFound):
            pass  # another writer moved it first; readers read forward from wherever it is
        except Exception as error:  # noqa: BLE001 - the record is stored; failing now would invite a duplicate
            log.warning("audit: head of chain %r not advanced to record %d (%s: %s); nothing is lost",
                        record.chain, record.seq, type(error).__name__, redact_text(str(error))[:200])

    # -- reading --------------------------------------------------------------------------------

    async def records(self, chain: str, *, after_seq: int = 0, limit: int | None = None) -> list[AuditRecord]:
        """The chain's records after ``after_seq``, in order, at most ``limit``.

        Records are returned as stored, not verified (use :meth:`verify`); a row that is not a
        record at all raises ``ValueError`` naming it.
        """
        chain = _check_chain(chain)
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise ValueError(f"after_seq must be a non-negative integer, got {after_seq!r}")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"limit must be a positive integer, got {limit!r}")
        found: list[AuditRecord] = []
        async for row in self._scan(chain, after_seq):
            try:
                found.append(_record(row))
            except _Malformed as error:
                raise ValueError(f"audit chain {chain!r}, row {row['RowKey']!r}: {error}; run verify") from None
            if limit is not None and len(found) >= limit:
                break
        return found

    async def last(self, chain: str) -> tuple[int, str]:
        """The chain's last record as ``(seq, hash)`` (``(0, GENESIS_HASH)`` for an empty chain)."""
        tip = await self._tip(_check_chain(chain))
        return tip.seq, tip.hash

    async def record_at(self, chain: str, seq: int) -> AuditRecord | None:
        """Record ``seq`` of the chain as stored (``None`` when there is no such row)."""
        try:
            row = await self._tables.get(self.table, _check_chain(chain), _seq_key(seq))
        except NotFound:
            return None
        return _record(row)

    async def chains(self) -> list[str]:
        """Every chain that has been appended to, sorted."""
        names: list[str] = []
        start: str | None = None
        while True:
            try:
                rows = await self._tables.query(self.index_table, _INDEX_PARTITION, row_key_from=start, limit=_PAGE)
            except NotFound:
                break
            names.extend(row["RowKey"] for row in rows)
            if len(rows) < _PAGE:
                break
            start = rows[-1]["RowKey"] + " "
        return sorted(names)

    async def tail(self, chain: str | None = None, *, after_seq: int = 0,
                   poll_interval: float = 1.0) -> AsyncIterator[AuditRecord]:
        """Follow new records as they are appended, forever (break out of the loop to stop).

        One chain, or every chain (``None``; chains that appear later are picked up too), each from
        after ``after_seq``: 0 replays what is there first. Checks again every ``poll_interval``
        seconds once caught up. Records are not verified on the way.
        """
        if chain is not None:
            chain = _check_chain(chain)
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        positions: dict[str, int] = {}
        while True:
            for name in [chain] if chain is not None else await self.chains():
                while True:
                    batch = await self.records(name, after_seq=positions.get(name, after_seq), limit=_PAGE)
                    for record in batch:
                        positions[name] = record.seq
                        yield record
                    if len(batch) < _PAGE:
                        break
            await asyncio.sleep(poll_interval)

    # -- verifying ------------------------------------------------------------------------------

    async def verify(self, chain: str | None = None) -> VerifyReport:
        """Recompute every record's hash and check the links and numbering: one chain, or all.

        Reports, per chain, the records that verified and the first break: ``hash mismatch`` (the
        record's content no longer matches its hash), ``prev_hash does not link`` (its prev_hash is
        not its predecessor's hash: a predecessor was rewritten with a fresh hash, or this record
        was), ``seq gap`` (a record is missing between stored ones, or stored under the wrong row),
        ``missing record`` (records the head hint saw are gone from the end).
        """
        names = [_check_chain(chain)] if chain is not None else await self.chains()
        return VerifyReport(tuple([await self._verify_chain(name) for name in names]))

    async def _verify_chain(self, chain: str) -> ChainReport:
        expected, prev_hash = 1, GENESIS_HASH

        def broken(seq: int, problem: str, detail: str) -> ChainReport:
            return ChainReport(chain, expected - 1, prev_hash, Break(chain, seq, problem, detail))

        async for row in self._scan(chain, 0):
            row_seq = _key_seq(row["RowKey"])
            if row_seq != expected:
                found = f"the next stored record is {row_seq}" if row_seq is not None \
                    else f"the next row is {row['RowKey']!r}, not a record number"
                return broken(expected, SEQ_GAP, f"record {expected} is missing; {found}")
            try:
                record = _record(row)
            except _Malformed as error:
                return broken(row_seq, HASH_MISMATCH, f"the record is malformed: {error}")
            if record.computed_hash() != record.hash:
                return broken(row_seq, HASH_MISMATCH, "the record's content does not match its hash: it was altered")
            if record.seq != row_seq:
                return broken(row_seq, SEQ_GAP, f"row {row['RowKey']} holds record number {record.seq}")
            if record.prev_hash != prev_hash:
                what = "the genesis hash" if row_seq == 1 else f"the hash of record {row_seq - 1}"
                return broken(row_seq, PREV_HASH_UNLINKED, f"prev_hash is not {what}")
            expected, prev_hash = expected + 1, record.hash

        last = expected - 1
        try:
            head = await self._tables.get(self.table, chain, _HEAD)
        except NotFound:
            head = {}
        head_seq = head.get("seq")
        if isinstance(head_seq, int) and not isinstance(head_seq, bool):
            if head_seq > last:
                return broken(last + 1, MISSING_RECORD,
                              f"the head saw record {head_seq} but the last stored record is {last}")
            if head_seq == last and head.get("hash") != prev_hash:
                return broken(last, HASH_MISMATCH, "the head saw a different hash for this record: it was rewritten")
        return ChainReport(chain, last, prev_hash)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _check_chain(chain: Any) -> str:
    if not isinstance(chain, str) or not chain.strip():
        raise ValueError(f"invalid audit chain {chain!r}: expected non-empty text")
    return check_key(chain, "audit chain")


def _check_text(value: Any, what: str, limit: int = 1024) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > limit:
        raise ValueError(f"invalid audit {what} {value!r}: expected non-empty text of at most {limit} characters")
    return value


def _row_seq(chain: str, row: Mapping[str, Any]) -> int:
    seq = _key_seq(row.get("RowKey"))
    if seq is None:
        raise AuditChainBroken(f"audit chain {chain!r} has a row {row.get('RowKey')!r} that is not a record number")
    return seq


def _utc_iso(moment: datetime) -> str:
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("the audit clock must return timezone-aware datetimes")
    return moment.astimezone(timezone.utc).isoformat(timespec="microseconds")
