"""Anchors: periodic snapshots of every audit chain's head, so cutting a chain short is caught too.

Hash links catch a record that was altered, removed or reordered *inside* a chain, and the head
hint catches records removed from its end, but someone able to write the table could remove the
last records of a chain *and* move its head back. An anchor closes that gap: every few minutes
(the kernel's ``audit_anchor`` timer, or ``aos audit anchor``) the seq and hash of each chain's last
record are written as a JSON blob to the ``audit-anchors`` container, and an ``audit.anchor``
record on the ``anchors`` chain holds that blob's name and SHA-256. Verifying then checks that the
latest anchor record's blob is intact and that every record the newest anchor blob names is still
there with the same hash.

Blob names are ``<UTC time>-<sha256 prefix>.json`` and never overwritten, so in Azure the container
can carry a time-based immutability (WORM) policy: then even the anchors chain cannot be rewritten
without the blobs giving it away.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from kernel.governance.audit import AuditLog
from kernel.governance.redaction import canonical_json
from kernel.ports import BlobStore, NotFound

CHAIN = "anchors"
CONTAINER = "audit-anchors"
KIND = "audit.anchor"
FORMAT = 1


@dataclass(frozen=True)
class AnchorProblem:
    chain: str
    seq: int
    detail: str


@dataclass
class AnchorReport:
    """The latest anchor and what no longer matches it (``anchored`` False: nothing anchored yet)."""

    anchored: bool
    anchor_seq: int = 0
    time: str | None = None
    chains_checked: int = 0
    problems: list[AnchorProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


class Anchors:
    """Writes and checks anchors of an :class:`AuditLog` in a blob container."""

    def __init__(self, audit: AuditLog, blobs: BlobStore, *, container: str = CONTAINER,
                 clock: Callable[[], datetime] | None = None) -> None:
        self._audit = audit
        self._blobs = blobs
        self._container = container
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    async def heads(self) -> dict[str, list[Any]]:
        """Every chain's last record as ``{chain: [seq, hash]}`` (the anchors chain excluded)."""
        found: dict[str, list[Any]] = {}
        for chain in await self._audit.chains():
            if chain == CHAIN:
                continue
            seq, last_hash = await self._audit.last(chain)
            if seq:
                found[chain] = [seq, last_hash]
        return found

    async def anchor(self, *, actor: str = "audit-anchor") -> dict[str, Any] | None:
        """Anchor the current heads; ``None`` when nothing was appended since the latest anchor."""
        heads = await self.heads()
        latest = await self._latest()
        if not heads or (latest is not None and latest[1] == heads):
            return None
        body = canonical_json({"v": FORMAT, "heads": heads}).encode("utf-8")
        sha = hashlib.sha256(body).hexdigest()
        name = f"{self._clock().astimezone(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}-{sha[:16]}.json"
        await self._blobs.put(self._container, name, body, content_type="application/json")
        record = await self._audit.append(CHAIN, KIND, actor=actor, data={
            "blob": name, "sha256": sha, "chains": len(heads), "records": sum(seq for seq, _ in heads.values())})
        return {"seq": record.seq, "blob": name, "chains": len(heads)}

    async def verify(self, chain: str | None = None) -> AnchorReport:
        """Check the anchors (for every chain, or one): the latest anchor record's blob is there and
        matches its digest, and every record the newest anchor blob names is still there, unchanged.

        The newest *blob* is checked rather than the newest record's, so removing anchor records does
        not hide anything while the blobs remain; a blob whose record was never written (a failed
        append) holds real heads all the same, so checking it is sound."""
        seq, _ = await self._audit.last(CHAIN)
        blobs = sorted(await self._blobs.list(self._container))
        if seq == 0:
            report = AnchorReport(anchored=bool(blobs))
            if blobs:
                report.problems.append(AnchorProblem(CHAIN, 0, f"{len(blobs)} anchor blob(s) exist but the anchors "
                                                               "chain is empty: it was removed"))
        else:
            record = await self._audit.record_at(CHAIN, seq)
            report = AnchorReport(anchored=True, anchor_seq=seq, time=record.time if record else None)
            data = record.data if record is not None and isinstance(record.data, dict) else {}
            name, sha = data.get("blob"), data.get("sha256")
            if not isinstance(name, str) or not isinstance(sha, str):
                report.problems.append(AnchorProblem(CHAIN, seq, "the latest anchor record does not name its blob"))
            elif await self._body(name, sha) is None:
                report.problems.append(AnchorProblem(CHAIN, seq, f"anchor blob {name} is missing or does not "
                                                                 "match the digest its record holds"))
        if not blobs:
            return report
        newest = blobs[-1]
        body = await self._body(newest, None)
        try:
            heads: dict[str, list[Any]] = json.loads(body or b"")["heads"]
        except (ValueError, KeyError, TypeError):
            report.problems.append(AnchorProblem(CHAIN, seq, f"anchor blob {newest} is not an anchor"))
            return report
        anchored_at = newest.split("-")[0]
        for name_, (anchored_seq, anchored_hash) in sorted(heads.items()):
            if chain is not None and name_ != chain:
                continue
            report.chains_checked += 1
            try:
                stored = await self._audit.record_at(name_, int(anchored_seq))
            except ValueError:
                stored = None
            if stored is None:
                report.problems.append(AnchorProblem(name_, int(anchored_seq), (
                    f"record {anchored_seq}, anchored at {anchored_at}, is gone: the chain was cut short")))
            elif stored.hash != anchored_hash:
                report.problems.append(AnchorProblem(name_, int(anchored_seq), (
                    f"record {anchored_seq} was rewritten after it was anchored at {anchored_at}")))
        return report

    async def _body(self, name: str, sha: str | None) -> bytes | None:
        try:
            body = await self._blobs.get(self._container, name)
        except NotFound:
            return None
        return body if sha is None or hashlib.sha256(body).hexdigest() == sha else None

    async def _latest(self) -> tuple[str, dict[str, list[Any]]] | None:
        seq, _ = await self._audit.last(CHAIN)
        if seq == 0:
            return None
        record = await self._audit.record_at(CHAIN, seq)
        name = record.data.get("blob") if record is not None and isinstance(record.data, dict) else None
        if not isinstance(name, str):
            return None
        try:
            return name, json.loads(await self._blobs.get(self._container, name))["heads"]
        except (NotFound, ValueError, KeyError):
            return None
