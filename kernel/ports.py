"""The kernel's ports: small async interfaces for blobs, tables, secrets and outbound messages.

Each port has two implementations that pass the same contract tests (``tests/adapters``): an
embedded one (files, SQLite, the environment, the embedded engine's bus) and an Azure SDK one
(Blob and Table storage or Azurite, Key Vault, Service Bus). ``kernel.adapters.factory`` picks
them from app settings; domain code depends only on this module. See docs/storage.md.

This module imports no Azure SDK. The name and value checks below are part of the contract: both
implementations apply them, so code that works against the embedded adapters does not fail later
against Azure on a name Azure rejects.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from kernel.messages import Envelope

__all__ = [
    "AlreadyExists",
    "BlobInfo",
    "BlobStore",
    "MessageSender",
    "NotFound",
    "OutboundMessage",
    "PreconditionFailed",
    "SecretStore",
    "TableStore",
    "ToolDenied",
    "ToolGateway",
    "check_blob_name",
    "check_container_name",
    "check_entity",
    "check_key",
    "check_table_name",
]


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------


class NotFound(LookupError):
    """The blob, entity, container, table or messaging entity does not exist."""


class AlreadyExists(Exception):
    """A create-only write (``overwrite=False``, ``insert``) found the item already there."""


class PreconditionFailed(Exception):
    """An ETag condition failed: someone else changed (or deleted) the item since it was read."""


# ----------------------------------------------------------------------------------------------
# Blobs
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BlobInfo:
    """What ``BlobStore.properties`` returns about one blob."""

    name: str
    etag: str
    size: int
    content_type: str
    metadata: Mapping[str, str]
    last_modified: datetime


@runtime_checkable
class BlobStore(Protocol):
    """Named byte strings in containers. Writes are atomic: a reader sees the old or the new blob."""

    async def put(self, container: str, name: str, data: bytes, *, content_type: str = "application/octet-stream",
                  overwrite: bool = True, metadata: Mapping[str, str] | None = None) -> str:
        """Write a blob and return its new ETag; creates the container if missing.

        ``overwrite=False`` raises :class:`AlreadyExists` when the blob exists.
        """
        ...

    async def get(self, container: str, name: str) -> bytes:
        """The blob's bytes; :class:`NotFound` if absent."""
        ...

    async def properties(self, container: str, name: str) -> BlobInfo:
        """ETag, size, content type and metadata; :class:`NotFound` if absent."""
        ...

    async def exists(self, container: str, name: str) -> bool: ...

    async def list(self, container: str, prefix: str = "") -> list[str]:
        """Blob names starting with ``prefix``, sorted; ``[]`` for a missing container."""
        ...

    async def delete(self, container: str, name: str) -> None:
        """Delete a blob; :class:`NotFound` if absent."""
        ...

    async def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------
# Tables
# ----------------------------------------------------------------------------------------------


@runtime_checkable
class TableStore(Protocol):
    """Entities keyed by (PartitionKey, RowKey) with ETag concurrency, as in Azure Table storage.

    An entity is a mapping with ``PartitionKey``, ``RowKey`` and scalar properties: ``str``,
    ``int`` (64-bit), ``float``, ``bool``, timezone-aware ``datetime`` (microsecond precision,
    returned in UTC), ``bytes``. ``None`` means "no such property": it is not stored. Returned
    entities are plain dicts that also carry ``"etag"``; an ``"etag"`` key in an entity passed in
    is ignored (pass it as the ``etag`` argument instead).
    """

    async def insert(self, table: str, entity: Mapping[str, Any]) -> str:
        """Create an entity, return its ETag; :class:`AlreadyExists`; creates the table if missing."""
        ...

    async def upsert(self, table: str, entity: Mapping[str, Any]) -> str:
        """Create or replace (all properties) an entity, return its ETag; creates the table."""
        ...

    async def update(self, table: str, entity: Mapping[str, Any], *, etag: str) -> str:
        """Replace an entity only if it still has ``etag``: :class:`PreconditionFailed` or :class:`NotFound`."""
        ...

    async def get(self, table: str, partition_key: str, row_key: str) -> dict[str, Any]:
        """The entity with its ``etag``; :class:`NotFound`."""
        ...

    async def delete(self, table: str, partition_key: str, row_key: str, *, etag: str | None = None) -> None:
        """Delete an entity; deleting an absent one is not an error (as in the Azure SDK).

        With ``etag``, only if the entity still has it (:class:`PreconditionFailed`).
        """
        ...

    async def query(self, table: str, partition_key: str, *, row_key_from: str | None = None,
                    row_key_to: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Entities of one partition, RowKey ascending; ``row_key_from`` inclusive, ``row_key_to`` exclusive."""
        ...

    async def query_below(self, table: str, property_name: str, below: datetime | float, *,
                          limit: int | None = None) -> list[dict[str, Any]]:
        """Entities of every partition whose ``property_name`` is less than ``below``, in no order.

        ``below`` is a timezone-aware ``datetime`` (matching datetime properties) or a ``float``
        (matching number properties); entities without the property, or with one of another
        kind, never match. It scans the table: the retention sweeps use it to find expired rows,
        not the hot paths. ``[]`` for a missing table.
        """
        ...

    async def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------
# Secrets
# ----------------------------------------------------------------------------------------------


@runtime_checkable
class SecretStore(Protocol):
    """Secret values by Key Vault name (1-127 letters, digits, hyphens)."""

    async def get(self, name: str) -> str:
        """The value; raises ``kernel.config.references.UnresolvedReference`` naming the secret, never a value."""
        ...

    async def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------
# Outbound messages
# ----------------------------------------------------------------------------------------------

PropertyValue = str | int | float | bool


@dataclass(frozen=True)
class OutboundMessage:
    """One Service Bus message to send; the fields are the broker's message properties."""

    body: bytes
    message_id: str
    subject: str | None = None
    to: str | None = None
    correlation_id: str | None = None
    reply_to: str | None = None
    session_id: str | None = None
    content_type: str | None = "application/json"
    application_properties: Mapping[str, PropertyValue] = field(default_factory=dict)
    scheduled_enqueue_time: datetime | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.body, (bytes, bytearray)):
            raise TypeError(f"OutboundMessage.body must be bytes, got {type(self.body).__name__}")
        if not self.message_id or len(self.message_id) > 128:
            raise ValueError("OutboundMessage.message_id must be 1-128 characters")
        for key, value in self.application_properties.items():
            if not isinstance(key, str) or not isinstance(value, (str, int, float, bool)):
                raise TypeError(f"application_properties[{key!r}] must be a str, int, float or bool")
        if self.scheduled_enqueue_time is not None and self.scheduled_enqueue_time.tzinfo is None:
            raise ValueError("scheduled_enqueue_time must be timezone-aware")

    @classmethod
    def from_envelope(cls, envelope: "Envelope") -> "OutboundMessage":
        """The envelope as a message: id, type (subject), to, correlation id, reply-to and routing properties."""
        properties: dict[str, PropertyValue] = {"type": envelope.type, "source": envelope.source}
        if envelope.traceparent:
            properties["traceparent"] = envelope.traceparent
        if envelope.causation_id:
            properties["causation_id"] = envelope.causation_id
        return cls(
            body=envelope.to_json().encode("utf-8"),
            message_id=envelope.id,
            subject=envelope.type,
            to=envelope.to,
            correlation_id=envelope.correlation_id,
            reply_to=envelope.reply_to,
            content_type="application/json",
            application_properties=properties,
        )


@runtime_checkable
class MessageSender(Protocol):
    """Sends messages to a Service Bus queue or topic (``NotFound`` when it does not exist)."""

    async def send(self, topic_or_queue: str, messages: Sequence[OutboundMessage]) -> None: ...

    async def probe(self, topic_or_queue: str) -> None:
        """Prove the queue or topic can be sent to, sending nothing (readiness checks): ``NotFound``
        when it does not exist, the transport's own error when the bus cannot be reached."""
        ...

    async def close(self) -> None: ...


# ----------------------------------------------------------------------------------------------
# Contract checks shared by both implementations
# ----------------------------------------------------------------------------------------------

_CONTAINER = re.compile(r"^(?=.{3,63}$)[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9]))*$")
_TABLE = re.compile(r"^[A-Za-z][A-Za-z0-9]{2,62}$")
_KEY_FORBIDDEN = re.compile(r"[/\\#?\x00-\x1f\x7f-\x9f]")
_PROPERTY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,254}$")
_SYSTEM_PROPERTIES = {"PartitionKey", "RowKey", "Timestamp", "etag"}
_INT64 = (-(2**63), 2**63 - 1)


def check_container_name(container: str) -> str:
    """Azure's container rule: 3-63 lowercase letters, digits and single hyphens."""
    if not isinstance(container, str) or not _CONTAINER.match(container):
        raise ValueError(
            f"invalid container name {container!r}: expected 3-63 lowercase letters, digits and single hyphens, "
            "starting and ending with a letter or digit"
        )
    return container


def check_blob_name(name: str) -> str:
    """1-1024 characters; '/' separates folders; no empty, '.' or '..' segments, no backslash or control chars."""
    if not isinstance(name, str) or not 1 <= len(name) <= 1024:
        raise ValueError(f"invalid blob name {name!r}: expected 1-1024 characters")
    if "\\" in name or any(ord(c) < 32 or ord(c) == 127 for c in name):
        raise ValueError(f"invalid blob name {name!r}: backslashes and control characters are not allowed")
    segments = name.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"invalid blob name {name!r}: empty, '.' and '..' path segments are not allowed")
    if any(segment.endswith(".") for segment in segments):
        raise ValueError(f"invalid blob name {name!r}: a path segment must not end with '.'")
    return name


def check_table_name(table: str) -> str:
    """Azure's table rule: 3-63 letters and digits, starting with a letter (case-insensitive)."""
    if not isinstance(table, str) or not _TABLE.match(table) or table.lower() == "tables":
        raise ValueError(f"invalid table name {table!r}: expected 3-63 letters and digits, starting with a letter")
    return table


def check_property_name(name: str) -> str:
    """A property a query names: an identifier of up to 255 characters, not a key or system property."""
    if not isinstance(name, str) or not _PROPERTY.match(name) or name in _SYSTEM_PROPERTIES or name.lower().startswith("odata"):
        raise ValueError(f"invalid property name {name!r}: expected an identifier of up to 255 characters "
                         "that is not PartitionKey, RowKey, Timestamp or etag")
    return name


def check_below(below: Any) -> datetime | float:
    """The bound of :meth:`TableStore.query_below`: a timezone-aware datetime or a finite number."""
    if isinstance(below, datetime):
        if below.tzinfo is None or below.utcoffset() is None:
            raise ValueError("query_below: a datetime bound must be timezone-aware")
        return below
    if isinstance(below, (int, float)) and not isinstance(below, bool) and math.isfinite(below):
        return float(below)
    raise TypeError(f"query_below: the bound must be a timezone-aware datetime or a finite number, got {below!r}")


def check_key(value: str, what: str) -> str:
    """PartitionKey and RowKey: strings up to 1024 characters without / \\ # ? or control characters."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a str, got {type(value).__name__}")
    if len(value) > 1024 or _KEY_FORBIDDEN.search(value):
        raise ValueError(f"invalid {what} {value!r}: up to 1024 characters, no '/', '\\', '#', '?' or control characters")
    return value


def check_entity(entity: Mapping[str, Any]) -> dict[str, Any]:
    """The entity's keys and properties, validated; ``etag`` and ``None`` values dropped."""
    if not isinstance(entity, Mapping):
        raise TypeError(f"an entity must be a mapping, got {type(entity).__name__}")
    for required in ("PartitionKey", "RowKey"):
        if required not in entity:
            raise ValueError(f"the entity has no {required}")
    checked: dict[str, Any] = {
        "PartitionKey": check_key(entity["PartitionKey"], "PartitionKey"),
        "RowKey": check_key(entity["RowKey"], "RowKey"),
    }
    for name, value in entity.items():
        if name in _SYSTEM_PROPERTIES or value is None:
            continue
        if not isinstance(name, str) or not _PROPERTY.match(name) or name.lower().startswith("odata"):
            raise ValueError(f"invalid property name {name!r}: expected an identifier of up to 255 characters")
        if isinstance(value, bool) or isinstance(value, (str, bytes)):
            pass
        elif isinstance(value, int):
            if not _INT64[0] <= value <= _INT64[1]:
                raise ValueError(f"property {name!r}: {value} does not fit in 64 bits")
        elif isinstance(value, float):
            if math.isnan(value) or math.isinf(value):
                raise ValueError(f"property {name!r}: NaN and infinities are not stored")
        elif isinstance(value, datetime):
            if value.tzinfo is None or value.utcoffset() is None:
                raise ValueError(f"property {name!r}: datetimes must be timezone-aware")
        elif isinstance(value, (bytearray, memoryview)):
            value = bytes(value)
        else:
            raise TypeError(
                f"property {name!r} is a {type(value).__name__}: expected str, int, float, bool, datetime, bytes or None"
            )
        checked[name] = value
    if len(checked) > 254:
        raise ValueError("an entity has at most 252 properties besides PartitionKey and RowKey")
    return checked


# ----------------------------------------------------------------------------------------------
# Tools
# ----------------------------------------------------------------------------------------------


class ToolDenied(PermissionError):
    """The agent asked for a tool its config does not grant."""


@runtime_checkable
class ToolGateway(Protocol):
    """MCP tools as an agent sees them: only what its config grants, enforced by the gateway.

    ``call_tool`` results have the shape ``{"content": [...], "structured_content": ...,
    "is_error": bool}``. ``call_id`` (turn id and call index) makes a call idempotent: asking
    again with the same id returns the first result instead of calling the tool twice.
    """

    async def list_tools(self, agent_id: str) -> dict[str, Any]:
        """``{"tools": [{"server", "name", "description", "input_schema"}], "unavailable": {server: reason}}``."""
        ...

    async def call_tool(self, agent_id: str, server: str, tool: str, arguments: Mapping[str, Any], *,
                        call_id: str) -> dict[str, Any]:
        """Call a granted tool; :class:`ToolDenied` when not granted."""
        ...

    async def close(self) -> None: ...
