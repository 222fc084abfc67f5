"""Config changes on the audit log: which document changed, from which version to which, and where.

Every config sync (at start, on the timer, after a drop, on ``POST /api/agents/sync``) compares the
valid documents with the register in table ``configregister`` (one row per document: kind, id,
version, file and a digest per top-level field) and appends ``config.added``, ``config.changed`` or
``config.removed`` to the ``configs`` audit chain, naming the fields that changed. The record says
what changed, never the values: a config may hold inline text an operator does not want copied,
and its full content stays in source control or the ``agent-configs`` container.

The register row is claimed before the record is written (create-only insert, or an update guarded
by the ETag read), so two syncs at once audit a change once; if the audit write then fails, the
claim is undone so the next sync tries again: a change is never silently skipped.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kernel.adapters import redact as redact_text
from kernel.config.loader import ConfigSet, Source
from kernel.governance.audit import AuditLog
from kernel.governance.redaction import digest
from kernel.ports import AlreadyExists, NotFound, PreconditionFailed, TableStore
from kernel.table_pages import rows_in_order

CHAIN = "configs"
TABLE = "configregister"
PARTITION = "docs"
log = logging.getLogger("aos.governance.configs")


@dataclass(frozen=True)
class ConfigChange:
    kind: str  # config.added | config.changed | config.removed
    doc_kind: str
    doc_id: str
    version: str | None
    previous_version: str | None
    fields: tuple[str, ...]


async def record_changes(configs: ConfigSet, tables: TableStore, audit: AuditLog, *,
                         actor: str = "config-sync") -> list[ConfigChange]:
    """Audit every document added, changed or removed since the last sync; returns what was audited.

    The register is read a page at a time (changed and removed documents in its order, then the
    added ones), and only documents whose version changed are built."""
    audited: list[ConfigChange] = []
    seen: set[tuple[str, str]] = set()
    async for row in rows_in_order(tables, TABLE, PARTITION):
        key = (str(row.get("kind")), str(row.get("id")))
        source = configs.sources.get(key) if key[1] in configs.by_kind(key[0]) else None
        if source is None:
            change = ConfigChange("config.removed", key[0], key[1], None, row.get("version"), ())
            if await _claim(tables, None, row) and await _audit(audit, change, row.get("file"), actor, tables, row, None):
                audited.append(change)
            continue
        seen.add(key)
        if row.get("version") != source.version:
            audited.extend(await _changed(configs, key, source, row, tables, audit, actor))
    for key, source in sorted(configs.sources.items()):
        if key not in seen and key[1] in configs.by_kind(key[0]):
            audited.extend(await _changed(configs, key, source, None, tables, audit, actor))
    return audited


async def _changed(configs: ConfigSet, key: tuple[str, str], source: Source, row: dict[str, Any] | None,
                   tables: TableStore, audit: AuditLog, actor: str) -> list[ConfigChange]:
    """Audit one added (no ``row``) or changed document: ``[change]``, or ``[]`` when another sync took it."""
    doc_kind, doc_id = key
    document = configs.by_kind(doc_kind)[doc_id]
    fields = _field_digests(document.model_dump(mode="json", by_alias=True, exclude_none=True))
    previous = json.loads(row.get("fields") or "{}") if row else {}
    changed = tuple(sorted(name for name in fields.keys() | previous.keys() if fields.get(name) != previous.get(name)))
    change = ConfigChange("config.changed" if row else "config.added", doc_kind, doc_id, source.version,
                          row.get("version") if row else None, changed)
    entity = {"PartitionKey": PARTITION, "RowKey": _row_key(doc_kind, doc_id), "kind": doc_kind, "id": doc_id,
              "version": source.version, "file": source.file, "fields": json.dumps(fields, sort_keys=True)}
    if await _claim(tables, entity, row) and await _audit(audit, change, source.file, actor, tables, row, entity):
        return [change]
    return []


def _field_digests(document: Mapping[str, Any]) -> dict[str, str]:
    """A short digest per top-level field: enough to name what changed without keeping values."""
    return {name: digest(value)[:16] for name, value in document.items() if name != "$schema"}


def _row_key(kind: str, doc_id: str) -> str:
    return f"{kind}|{doc_id}"


async def _claim(tables: TableStore, entity: dict[str, Any] | None, row: dict[str, Any] | None) -> bool:
    """Take the change for this sync: False when another sync took it first."""
    try:
        if entity is None:
            await tables.delete(TABLE, PARTITION, row["RowKey"], etag=row["etag"])  # type: ignore[index]
        elif row is None:
            await tables.insert(TABLE, entity)
        else:
            await tables.update(TABLE, entity, etag=row["etag"])
    except (AlreadyExists, PreconditionFailed, NotFound):
        return False
    return True


async def _audit(audit: AuditLog, change: ConfigChange, file: Any, actor: str, tables: TableStore,
                 row: dict[str, Any] | None, entity: dict[str, Any] | None) -> bool:
    data = {"kind": change.doc_kind, "id": change.doc_id, "version": change.version,
            "previous_version": change.previous_version, "file": file, "fields": list(change.fields)}
    try:
        await audit.append(CHAIN, change.kind, actor=actor, subject=f"{change.doc_kind}/{change.doc_id}", data=data)
        return True
    except Exception as error:  # noqa: BLE001 - undo the claim so the next sync audits it
        log.error("config audit: %s of %s '%s' not recorded (%s: %s); the next sync retries",
                  change.kind, change.doc_kind, change.doc_id, type(error).__name__, redact_text(str(error))[:200])
        await _undo(tables, row, entity)
        return False


async def _undo(tables: TableStore, row: dict[str, Any] | None, entity: dict[str, Any] | None) -> None:
    try:
        if row is None and entity is not None:
            await tables.delete(TABLE, PARTITION, entity["RowKey"])
        elif row is not None:
            await tables.upsert(TABLE, {k: v for k, v in row.items() if k not in ("etag", "Timestamp")})
    except Exception as error:  # noqa: BLE001
        log.error("config audit: could not undo the register row %s (%s)", (entity or row or {}).get("RowKey"),
                  type(error).__name__)
