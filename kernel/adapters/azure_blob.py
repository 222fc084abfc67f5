"""``AzureBlobStore``: the ``BlobStore`` port on Azure Blob storage (or Azurite).

One ``azure.storage.blob.aio.BlobServiceClient`` per store, built from a connection string
(Azurite, development) or an account URL and a token credential (managed identity in Azure).
A blob upload is atomic on the service side (a single Put Blob, or a block list commit for large
blobs); ``overwrite=False`` is ``If-None-Match: *``. A container missing at ``put`` time is created
and the upload retried once. The SDK is imported when the store is built, not when this module is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kernel.adapters.azure_common import expand_connection_string, raise_mapped, safe_client_error
from kernel.ports import BlobInfo, NotFound, check_blob_name, check_container_name


class AzureBlobStore:
    def __init__(self, *, connection_string: str | None = None, account_url: str | None = None,
                 credential: Any = None, api_version: str | None = None, client: Any = None) -> None:
        if client is None:
            from azure.storage.blob.aio import BlobServiceClient

            options = {"api_version": api_version} if api_version else {}
            try:
                if connection_string:
                    client = BlobServiceClient.from_connection_string(expand_connection_string(connection_string),
                                                                      **options)
                elif account_url and credential is not None:
                    client = BlobServiceClient(account_url, credential=credential, **options)
                else:
                    raise ValueError("give a connection string, or an account URL and a credential")
            except Exception as error:
                raise safe_client_error(error, "Blob storage") from None
        self._client = client

    async def put(self, container: str, name: str, data: bytes, *, content_type: str = "application/octet-stream",
                  overwrite: bool = True, metadata: Mapping[str, str] | None = None) -> str:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
        from azure.storage.blob import ContentSettings

        check_container_name(container)
        check_blob_name(name)
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"blob data must be bytes, got {type(data).__name__}")
        blob = self._client.get_blob_client(container, name)
        kwargs = dict(overwrite=overwrite, content_settings=ContentSettings(content_type=content_type),
                      metadata={str(k): str(v) for k, v in (metadata or {}).items()})
        for attempt in (1, 2):
            try:
                result = await blob.upload_blob(bytes(data), **kwargs)
                return str(result["etag"])
            except ResourceNotFoundError as error:
                if attempt == 2 or getattr(error, "error_code", None) != "ContainerNotFound":
                    raise_mapped(error, f"container {container}")
                await self._create_container(container)
            except HttpResponseError as error:
                raise_mapped(error, f"blob {container}/{name}")
        raise AssertionError("unreachable")

    async def _create_container(self, container: str) -> None:
        from azure.core.exceptions import ResourceExistsError

        try:
            await self._client.create_container(container)
        except ResourceExistsError:
            pass  # created meanwhile by someone else

    async def get(self, container: str, name: str) -> bytes:
        from azure.core.exceptions import HttpResponseError

        blob = self._blob(container, name)
        try:
            downloader = await blob.download_blob()
            return bytes(await downloader.readall())
        except HttpResponseError as error:
            raise_mapped(error, f"blob {container}/{name}")

    async def properties(self, container: str, name: str) -> BlobInfo:
        from azure.core.exceptions import HttpResponseError

        blob = self._blob(container, name)
        try:
            props = await blob.get_blob_properties()
        except HttpResponseError as error:
            raise_mapped(error, f"blob {container}/{name}")
        return BlobInfo(name=name, etag=str(props.etag), size=int(props.size),
                        content_type=props.content_settings.content_type or "application/octet-stream",
                        metadata=dict(props.metadata or {}), last_modified=props.last_modified)

    async def exists(self, container: str, name: str) -> bool:
        from azure.core.exceptions import HttpResponseError

        try:
            return bool(await self._blob(container, name).exists())
        except HttpResponseError as error:
            raise_mapped(error, f"blob {container}/{name}")

    async def list(self, container: str, prefix: str = "") -> list[str]:
        from azure.core.exceptions import HttpResponseError, ResourceNotFoundError

        check_container_name(container)
        names: list[str] = []
        try:
            async for name in self._client.get_container_client(container).list_blob_names(
                name_starts_with=prefix or None
            ):
                names.append(name)
        except ResourceNotFoundError:
            return []
        except HttpResponseError as error:
            raise_mapped(error, f"container {container}")
        return sorted(names)

    async def delete(self, container: str, name: str) -> None:
        from azure.core.exceptions import HttpResponseError

        try:
            await self._blob(container, name).delete_blob()
        except HttpResponseError as error:
            raise_mapped(error, f"blob {container}/{name}")

    async def close(self) -> None:
        await self._client.close()

    def _blob(self, container: str, name: str) -> Any:
        check_container_name(container)
        check_blob_name(name)
        return self._client.get_blob_client(container, name)


__all__ = ["AzureBlobStore", "NotFound"]
