"""``AzureTableStore``: the ``TableStore`` port on Azure Table storage (or Azurite).

One ``azure.data.tables.aio.TableServiceClient`` per store (connection string, or account URL and
token credential). Updates and conditional deletes send ``If-Match: <etag>``
(``MatchConditions.IfNotModified``); upserts and updates replace all properties
(``UpdateMode.REPLACE``). Integers outside 32 bits are sent as ``Edm.Int64``; every integer comes
back as a plain ``int`` and datetimes as plain UTC ``datetime`` objects, so callers never see the
SDK's ``EntityProperty`` or ``TablesEntityDatetime`` wrappers. A table missing at write time is
created and the write retried once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

from kernel.adapters.azure_common import expand_connection_string, raise_mapped, safe_client_error
from kernel.ports import check_below, check_entity, check_key, check_property_name, check_table_name

_INT32 = (-(2**31), 2**31 - 1)


def _to_sdk(entity: dict[str, Any]) -> dict[str, Any]:
    from azure.data.tables import EdmType

    out: dict[str, Any] = {}
    for name, value in entity.items():
        if isinstance(value, int) and not isinstance(value, bool) and not _INT32[0] <= value <= _INT32[1]:
            value = (value, EdmType.INT64)
        out[name] = value
    return out


def _from_sdk(entity: Any) -> dict[str, Any]:
    from azure.data.tables import EntityProperty

    out: dict[str, Any] = {}
    for name, value in entity.items():
        if isinstance(value, EntityProperty):
            value = value.value
        if isinstance(value, datetime):
            value = datetime(value.year, value.month, value.day, value.hour, value.minute, value.second,
                             value.microsecond, tzinfo=timezone.utc)
        out[name] = value
    out["etag"] = entity.metadata.get("etag")
    return out


def _table_not_found(error: Exception) -> bool:
    # create_entity/upsert_entity raise a bare ResourceNotFoundError; the code is only in its text
    return getattr(error, "error_code", None) == "TableNotFound" or "TableNotFound" in str(error)


class AzureTableStore:
    def __init__(self, *, connection_string: str | None = None, endpoint: str | None = None,
                 credential: Any = None, client: Any = None) -> None:
        if client is None:
            from azure.data.tables.aio import TableServiceClient

            try:
                if connection_string:
                    client = TableServiceClient.from_connection_string(expand_connection_string(connection_string))
                elif endpoint and credential is not None:
                    client = TableServiceClient(endpoint, credential=credential)
                else:
                    raise ValueError("give a connection string, or a table endpoint and a credential")
            except Exception as error:
                raise safe_client_error(error, "Table storage") from None
        self._client = client
        self._tables: dict[str, Any] = {}

    def _table(self, table: str) -> Any:
        key = check_table_name(table).lower()
        if key not in self._tables:
            self._tables[key] = self._client.get_table_client(table)
        return self._tables[key]

    async def _write(self, table: str, entity: dict[str, Any], operation: str, **kwargs: Any) -> str:
        from azure.core.exceptions import HttpResponseError, ResourceExistsError, ResourceNotFoundError

        client = self._table(table)
        what = f"entity ({entity['PartitionKey']!r}, {entity['RowKey']!r}) in table {table}"
        for attempt in (1, 2):
            try:
                result = await getattr(client, operation)(_to_sdk(entity), **kwargs)
                return str(result["etag"])
            except ResourceNotFoundError as error:
                if attempt == 2 or operation == "update_entity" or not _table_not_found(error):
                    raise_mapped(error, what)
                try:
                    await self._client.create_table(table)
                except ResourceExistsError:
                    pass
            except HttpResponseError as error:
                raise_mapped(error, what)
        raise AssertionError("unreachable")

    async def insert(self, table: str, entity: Mapping[str, Any]) -> str:
        return await self._write(table, check_entity(entity), "create_entity")

    async def upsert(self, table: str, entity: Mapping[str, Any]) -> str:
        from azure.data.tables import UpdateMode

        return await self._write(table, check_entity(entity), "upsert_entity", mode=UpdateMode.REPLACE)

    async def update(self, table: str, entity: Mapping[str, Any], *, etag: str) -> str:
        from azure.core import MatchConditions
        from azure.data.tables import UpdateMode

        if not etag:
            raise ValueError("update needs the etag the entity was read with")
        return await self._write(table, check_entity(entity), "update_entity", mode=UpdateMode.REPLACE,
                                 etag=etag, match_condition=MatchConditions.IfNotModified)

    async def get(self, table: str, partition_key: str, row_key: str) -> dict[str, Any]:
        from azure.core.exceptions import HttpResponseError

        check_key(partition_key, "PartitionKey")
        check_key(row_key, "RowKey")
        try:
            entity = await self._table(table).get_entity(partition_key, row_key)
        except HttpResponseError as error:
            raise_mapped(error, f"entity ({partition_key!r}, {row_key!r}) in table {table}")
        return _from_sdk(entity)

    async def delete(self, table: str, partition_key: str, row_key: str, *, etag: str | None = None) -> None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError

        check_key(partition_key, "PartitionKey")
        check_key(row_key, "RowKey")
        condition = MatchConditions.IfNotModified if etag else MatchConditions.Unconditionally
        try:  # the SDK itself treats 404 as success
            await self._table(table).delete_entity(partition_key, row_key, etag=etag, match_condition=condition)
        except HttpResponseError as error:
            raise_mapped(error, f"entity ({partition_key!r}, {row_key!r}) in table {table}")

    async def query(self, table: str, partition_key: str, *, row_key_from: str | None = None,
                    row_key_to: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        check_key(partition_key, "PartitionKey")
        query, parameters = "PartitionKey eq @pk", {"pk": partition_key}
        if row_key_from is not None:
            query, parameters["start"] = query + " and RowKey ge @start", row_key_from
        if row_key_to is not None:
            query, parameters["stop"] = query + " and RowKey lt @stop", row_key_to
        found = await self._select(table, query, parameters, limit)
        found.sort(key=lambda e: e["RowKey"])  # the service already returns them in order
        return found

    async def query_below(self, table: str, property_name: str, below: datetime | float, *,
                          limit: int | None = None) -> list[dict[str, Any]]:
        check_property_name(property_name)
        below = check_below(below)
        # Azure compares only values of the literal's type; Azurite also compares text with a
        # datetime literal. The kind is checked here too, so both answer alike.
        kind: type | tuple[type, ...] = datetime if isinstance(below, datetime) else (int, float)

        def of_kind(row: dict[str, Any]) -> bool:
            value = row.get(property_name)
            return isinstance(value, kind) and not isinstance(value, bool)

        return await self._select(table, f"{property_name} lt @below", {"below": below}, limit, of_kind)

    async def _select(self, table: str, query: str, parameters: dict[str, Any], limit: int | None,
                      keep: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """The entities ``query`` matches (and ``keep`` accepts), at most ``limit``; ``[]`` for a missing table."""
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        if limit is not None and limit < 1:
            raise ValueError("limit must be a positive number")
        found: list[dict[str, Any]] = []
        try:
            pages = self._table(table).query_entities(
                query, parameters=parameters, results_per_page=min(limit, 1000) if limit else None)
            async for entity in pages:
                row = _from_sdk(entity)
                if keep is not None and not keep(row):
                    continue
                found.append(row)
                if limit is not None and len(found) >= limit:
                    break
        except ResourceNotFoundError:
            return []
        except HttpResponseError as error:
            raise_mapped(error, f"table {table}")
        return found

    async def close(self) -> None:
        for client in self._tables.values():
            await client.close()
        await self._client.close()
