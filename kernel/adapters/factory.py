"""Build the ports from app settings: embedded or Azure, chosen by configuration, never by code.

    adapters = Adapters(environ)                # the composition root passes the app settings in
    await adapters.blobs.put("turns", "cfo/0001.json", data)
    ...
    await adapters.close()                      # at shutdown: closes what was built

Settings (docs/storage.md has the full story):

- ``AOS_STORAGE`` = ``embedded`` (default: files and SQLite under ``AOS_STATE_DIR``) or ``azure``
  (Blob and Table storage through ``AzureWebJobsStorage``: a connection string, or
  ``UseDevelopmentStorage=true`` for Azurite, or with managed identity
  ``AzureWebJobsStorage__accountName`` / ``__blobServiceUri`` + ``__tableServiceUri``).
- ``AOS_MESSAGING`` = ``embedded`` (default: the embedded engine's bus) or ``azure``
  (``ServiceBusConnection``, or ``ServiceBusConnection__fullyQualifiedNamespace`` with identity).
- ``AOS_EMBEDDED_SYNC`` = ``normal`` (default: embedded state survives a killed process) or ``full``
  (also a power cut: SQLite ``synchronous=FULL``, blobs fsynced); ``kernel/durability.py``.
- Secrets come from Key Vault when ``AOS_KEY_VAULT_URL`` is set (cached ``AOS_SECRET_CACHE_SECONDS``),
  otherwise from the environment mapping given to ``Adapters``.

Managed identity uses one ``DefaultAzureCredential`` (azure.identity.aio) shared by all adapters;
``AZURE_CLIENT_ID`` selects a user-assigned identity, as azure-identity documents. Everything is
built lazily, on first use, and Azure SDK modules are imported only then. The adapters are asyncio
objects: use one ``Adapters`` per event loop. Nothing here logs or echoes a connection string.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel import durability, settings
from kernel.adapters import redact
from kernel.ports import BlobStore, MessageSender, SecretStore, TableStore

EMBEDDED, AZURE = "embedded", "azure"


def _setting(name: str, environ: Mapping[str, str]) -> str:
    return settings.get(name, environ).strip()


def _choice(name: str, environ: Mapping[str, str]) -> str:
    value = _setting(name, environ).lower() or EMBEDDED
    if value not in (EMBEDDED, AZURE):
        raise ValueError(f"app setting {name} must be '{EMBEDDED}' or '{AZURE}', got {value!r}")
    return value


@dataclass(frozen=True)
class Selection:
    """What the settings select, without any secret (safe to log)."""

    storage: str
    storage_target: str
    messaging: str
    messaging_target: str
    secrets: str
    secrets_target: str


def _account_host(connection_string: str) -> str:
    parts = dict(p.split("=", 1) for p in connection_string.split(";") if "=" in p)
    if "AccountName" in parts:
        return f"account {parts['AccountName']}"
    return "development storage" if "UseDevelopmentStorage" in connection_string else "connection string"


class Adapters:
    """The four ports, built from settings on first use and closed together."""

    def __init__(self, environ: Mapping[str, str], *, app_root: Path | None = None, bus_target: Any = None,
                 bus_loop: Any = None, credential: Any = None) -> None:
        """``environ``: the app settings (the process environment in a Functions app). ``bus_target``: the
        ``EmbeddedHost`` or ``EmbeddedBus`` the embedded sender sends through (default: the target
        registered with ``kernel.adapters.embedded_sender.set_default_target``)."""
        self._environ = environ
        self._app_root = app_root or settings.APP_ROOT
        self._bus_target = bus_target
        self._bus_loop = bus_loop
        self._credential = credential
        self._owns_credential = credential is None
        self._built: dict[str, Any] = {}
        self.storage = _choice("AOS_STORAGE", environ)
        self.messaging = _choice("AOS_MESSAGING", environ)

    # what is selected ---------------------------------------------------------------------------
    @property
    def state_dir(self) -> Path:
        raw = Path(_setting("AOS_STATE_DIR", self._environ) or ".aos")
        return raw if raw.is_absolute() else self._app_root / raw

    def selection(self) -> Selection:
        env = self._environ
        if self.storage == EMBEDDED:
            storage_target = str(self.state_dir)
        else:
            conn = _setting("AzureWebJobsStorage", env)
            storage_target = _account_host(conn) if conn else (
                _setting("AzureWebJobsStorage__accountName", env) or _setting("AzureWebJobsStorage__blobServiceUri", env)
                or "(not configured)") + " (managed identity)"
        if self.messaging == EMBEDDED:
            messaging_target = "embedded engine bus"
        else:
            namespace = _setting("ServiceBusConnection__fullyQualifiedNamespace", env)
            messaging_target = f"{namespace} (managed identity)" if namespace else (
                "connection string" if _setting("ServiceBusConnection", env) else "(not configured)")
        vault = _setting("AOS_KEY_VAULT_URL", env)
        return Selection(self.storage, redact(storage_target), self.messaging, messaging_target,
                         "keyvault" if vault else "environment", vault or "environment variables")

    # shared credential --------------------------------------------------------------------------
    def credential(self) -> Any:
        if self._credential is None:
            from azure.identity.aio import DefaultAzureCredential

            self._credential = DefaultAzureCredential()
        return self._credential

    # ports ---------------------------------------------------------------------------------------
    @property
    def blobs(self) -> BlobStore:
        if "blobs" not in self._built:
            self._built["blobs"] = self._build_blobs()
        return self._built["blobs"]

    @property
    def tables(self) -> TableStore:
        if "tables" not in self._built:
            self._built["tables"] = self._build_tables()
        return self._built["tables"]

    @property
    def secrets(self) -> SecretStore:
        if "secrets" not in self._built:
            self._built["secrets"] = self._build_secrets()
        return self._built["secrets"]

    @property
    def sender(self) -> MessageSender:
        if "sender" not in self._built:
            self._built["sender"] = self._build_sender()
        return self._built["sender"]

    def _storage_endpoint(self, kind: str) -> str:
        env = self._environ
        explicit = _setting(f"AzureWebJobsStorage__{kind}ServiceUri", env)
        account = _setting("AzureWebJobsStorage__accountName", env)
        if explicit:
            return explicit
        if account:
            return f"https://{account}.{kind}.core.windows.net"
        raise ValueError(
            "AOS_STORAGE=azure needs AzureWebJobsStorage (a connection string, or UseDevelopmentStorage=true for "
            f"Azurite), or for managed identity AzureWebJobsStorage__accountName or AzureWebJobsStorage__{kind}ServiceUri"
        )

    def _sync_mode(self) -> str:
        """``AOS_EMBEDDED_SYNC``: the embedded stores' durability (``kernel/durability.py``)."""
        return durability.sync_mode(_setting(durability.SETTING, self._environ))

    def _build_blobs(self) -> BlobStore:
        if self.storage == EMBEDDED:
            from kernel.adapters.embedded_blob import EmbeddedBlobStore

            return EmbeddedBlobStore(self.state_dir / "blobs", fsync=self._sync_mode() == durability.FULL)
        from kernel.adapters.azure_blob import AzureBlobStore

        conn = _setting("AzureWebJobsStorage", self._environ)
        if conn:
            return AzureBlobStore(connection_string=conn)
        return AzureBlobStore(account_url=self._storage_endpoint("blob"), credential=self.credential())

    def _build_tables(self) -> TableStore:
        if self.storage == EMBEDDED:
            from kernel.adapters.embedded_table import EmbeddedTableStore

            return EmbeddedTableStore(self.state_dir / "tables.sqlite",
                                      synchronous=durability.sqlite_synchronous(self._sync_mode()))
        from kernel.adapters.azure_table import AzureTableStore

        conn = _setting("AzureWebJobsStorage", self._environ)
        if conn:
            return AzureTableStore(connection_string=conn)
        return AzureTableStore(endpoint=self._storage_endpoint("table"), credential=self.credential())

    def _build_secrets(self) -> SecretStore:
        vault = _setting("AOS_KEY_VAULT_URL", self._environ)
        if not vault:
            from kernel.adapters.embedded_secrets import EnvironmentSecretStore

            return EnvironmentSecretStore(self._environ)
        from kernel.adapters.azure_secrets import KeyVaultSecretStore

        raw_ttl = _setting("AOS_SECRET_CACHE_SECONDS", self._environ) or "300"
        try:
            ttl = float(raw_ttl)
        except ValueError:
            raise ValueError(f"app setting AOS_SECRET_CACHE_SECONDS must be a number of seconds, got {raw_ttl!r}") from None
        return KeyVaultSecretStore(vault, self.credential(), ttl=ttl)

    def _build_sender(self) -> MessageSender:
        if self.messaging == EMBEDDED:
            from kernel.adapters.embedded_sender import EmbeddedMessageSender, default_target

            target, loop = (self._bus_target, self._bus_loop) if self._bus_target is not None else default_target()
            if target is None:
                raise RuntimeError(
                    "AOS_MESSAGING=embedded, but no embedded bus is running: pass Adapters(..., bus_target=host) or "
                    "register the engine with kernel.adapters.embedded_sender.set_default_target"
                )
            return EmbeddedMessageSender(target, loop=loop)
        from kernel.adapters.azure_servicebus import ServiceBusMessageSender

        conn = _setting("ServiceBusConnection", self._environ)
        if conn:
            return ServiceBusMessageSender(connection_string=conn)
        namespace = _setting("ServiceBusConnection__fullyQualifiedNamespace", self._environ)
        if not namespace:
            raise ValueError("AOS_MESSAGING=azure needs ServiceBusConnection (a connection string) or "
                             "ServiceBusConnection__fullyQualifiedNamespace (managed identity)")
        return ServiceBusMessageSender(fully_qualified_namespace=namespace, credential=self.credential())

    async def close(self) -> None:
        """Close every adapter built so far, then the credential this object created."""
        built, self._built = list(self._built.values()), {}
        for adapter in built:
            await adapter.close()
        if self._owns_credential and self._credential is not None:
            await self._credential.close()
            self._credential = None
