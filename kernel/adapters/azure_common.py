"""Helpers shared by the Azure adapters: SDK error mapping and Azurite's connection string.

Imports azure-core only inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

from typing import NoReturn

from kernel.adapters import redact
from kernel.ports import AlreadyExists, NotFound, PreconditionFailed

# The public, well-known Azurite / storage emulator account (documented by Microsoft; not a secret).
_DEV_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
DEVELOPMENT_STORAGE = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;AccountKey=" + _DEV_KEY + ";"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)


def expand_connection_string(connection_string: str) -> str:
    """``UseDevelopmentStorage=true`` as the full Azurite connection string; anything else unchanged."""
    if connection_string.replace(" ", "").lower().rstrip(";") == "usedevelopmentstorage=true":
        return DEVELOPMENT_STORAGE
    return connection_string


def raise_mapped(error: Exception, what: str) -> NoReturn:
    """Re-raise an azure-core error as the port's error; ``what`` names the item, never a secret."""
    from azure.core.exceptions import (
        ResourceExistsError,
        ResourceModifiedError,
        ResourceNotFoundError,
    )

    status = getattr(error, "status_code", None)
    code = getattr(error, "error_code", None)
    detail = f" ({code})" if code else ""
    if isinstance(error, ResourceModifiedError) or status == 412:
        raise PreconditionFailed(f"{what} changed since it was read (etag mismatch){detail}") from None
    if isinstance(error, ResourceNotFoundError) or status == 404:
        raise NotFound(f"{what} not found{detail}") from None
    if isinstance(error, ResourceExistsError) or status == 409:
        raise AlreadyExists(f"{what} already exists{detail}") from None
    raise error


def safe_client_error(error: Exception, what: str) -> ValueError:
    """A constructor error (a malformed connection string) without the connection string in it."""
    return ValueError(f"cannot create the {what} client: {type(error).__name__}: {redact(str(error))}")
