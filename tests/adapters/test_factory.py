"""Settings pick the implementations; the Azure SDKs load only when the settings ask for them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kernel.adapters.azure_blob import AzureBlobStore
from kernel.adapters.azure_secrets import KeyVaultSecretStore
from kernel.adapters.azure_servicebus import ServiceBusMessageSender
from kernel.adapters.azure_table import AzureTableStore
from kernel.adapters.embedded_blob import EmbeddedBlobStore
from kernel.adapters.embedded_secrets import EnvironmentSecretStore
from kernel.adapters.embedded_sender import EmbeddedMessageSender, set_default_target
from kernel.adapters.embedded_table import EmbeddedTableStore
from kernel.adapters.factory import Adapters
from kernel.ports import OutboundMessage

REPO = Path(__file__).resolve().parents[2]
AZURE_MODULES = ("azure.storage", "azure.data", "azure.keyvault", "azure.servicebus", "azure.identity",
                 "kernel.adapters.azure")


class StubCredential:
    async def get_token(self, *scopes: str, **_: Any) -> Any:
        from azure.core.credentials import AccessToken

        return AccessToken("token", int(time.time()) + 3600)

    async def close(self) -> None:
        return None


def _loaded_after(statement: str) -> list[str]:
    code = (f"import sys\n{statement}\n"
            f"print(__import__('json').dumps(sorted(m for m in sys.modules if m.startswith({AZURE_MODULES!r}))))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_importing_the_function_app_loads_no_azure_storage_or_messaging_sdk() -> None:
    assert _loaded_after("import function_app") == []


def test_the_factory_and_embedded_adapters_load_no_azure_sdk() -> None:
    statement = ("import kernel.adapters.factory, kernel.adapters.embedded_blob, kernel.adapters.embedded_table, "
                 "kernel.adapters.embedded_secrets, kernel.adapters.embedded_sender, kernel.ports\n"
                 "from kernel.adapters.factory import Adapters\n"
                 "a = Adapters({'OPENAI_API_KEY': 'x'})\n"
                 "a.blobs, a.tables, a.secrets")
    assert _loaded_after(statement) == []


async def test_defaults_are_embedded_under_the_state_dir(tmp_path: Path) -> None:
    adapters = Adapters({"OPENAI_API_KEY": "sk-1"}, app_root=tmp_path)
    try:
        assert isinstance(adapters.blobs, EmbeddedBlobStore)
        assert isinstance(adapters.tables, EmbeddedTableStore)
        assert isinstance(adapters.secrets, EnvironmentSecretStore)
        await adapters.blobs.put("turns", "cfo/1.json", b"{}")
        await adapters.tables.insert("agents", {"PartitionKey": "cfo", "RowKey": "state"})
        assert await adapters.secrets.get("openai-api-key") == "sk-1"
        assert (tmp_path / ".aos" / "blobs" / "turns" / "cfo" / "1.json").read_bytes() == b"{}"
        assert (tmp_path / ".aos" / "tables.sqlite").is_file()
        assert adapters.selection().storage_target == str(tmp_path / ".aos")
    finally:
        await adapters.close()


async def test_an_absolute_state_dir_is_used_as_is(tmp_path: Path) -> None:
    adapters = Adapters({"AOS_STATE_DIR": str(tmp_path / "state")}, app_root=Path("/nonexistent"))
    try:
        await adapters.blobs.put("c-1", "x", b"1")
        assert (tmp_path / "state" / "blobs" / "c-1" / "x").is_file()
    finally:
        await adapters.close()


async def test_azure_storage_with_a_connection_string_reaches_azurite(azurite: str, unique: str) -> None:
    adapters = Adapters({"AOS_STORAGE": "azure", "AzureWebJobsStorage": azurite})
    try:
        assert isinstance(adapters.blobs, AzureBlobStore) and isinstance(adapters.tables, AzureTableStore)
        await adapters.blobs.put(f"f-{unique}", "x", b"hello")
        assert await adapters.blobs.get(f"f-{unique}", "x") == b"hello"
        await adapters.tables.insert(f"f{unique}", {"PartitionKey": "p", "RowKey": "r"})
        selection = adapters.selection()
        assert selection.storage_target == "account devstoreaccount1"
        assert "Eby8" not in repr(selection)
    finally:
        await adapters.close()


async def test_managed_identity_storage_endpoints() -> None:
    adapters = Adapters({"AOS_STORAGE": "azure", "AzureWebJobsStorage__accountName": "aosdata",
                         "AzureWebJobsStorage__tableServiceUri": "https://tables.example.net"},
                        credential=StubCredential())
    try:
        assert adapters.blobs._client.url.startswith("https://aosdata.blob.core.windows.net")  # type: ignore[attr-defined]
        assert adapters.tables._client.url.startswith("https://tables.example.net")  # type: ignore[attr-defined]
        assert "managed identity" in adapters.selection().storage_target
    finally:
        await adapters.close()


def test_use_development_storage_means_azurite() -> None:
    store = Adapters({"AOS_STORAGE": "azure", "AzureWebJobsStorage": "UseDevelopmentStorage=true"}).blobs
    assert store._client.url.startswith("http://127.0.0.1:10000/devstoreaccount1")  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    "environ, words",
    [
        ({"AOS_STORAGE": "cloud"}, "AOS_STORAGE must be"),
        ({"AOS_MESSAGING": "kafka"}, "AOS_MESSAGING must be"),
    ],
)
def test_unknown_choices_name_the_setting(environ: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        Adapters(environ)


def test_azure_storage_without_a_connection_says_which_settings_to_set() -> None:
    with pytest.raises(ValueError, match="AzureWebJobsStorage__accountName"):
        Adapters({"AOS_STORAGE": "azure"}).blobs


def test_a_malformed_connection_string_never_echoes_its_key() -> None:
    with pytest.raises(ValueError) as raised:
        Adapters({"AOS_STORAGE": "azure", "AzureWebJobsStorage": "AccountKey=TOPSECRETKEY==;Nonsense"}).blobs
    assert "TOPSECRETKEY" not in str(raised.value)


async def test_key_vault_is_used_when_its_url_is_set() -> None:
    adapters = Adapters({"AOS_KEY_VAULT_URL": "https://aos-kv.vault.azure.net", "AOS_SECRET_CACHE_SECONDS": "30"},
                        credential=StubCredential())
    try:
        store = adapters.secrets
        assert isinstance(store, KeyVaultSecretStore) and store._ttl == 30.0
        assert adapters.selection().secrets == "keyvault"
    finally:
        await adapters.close()


async def test_the_embedded_sender_needs_a_running_bus() -> None:
    with pytest.raises(RuntimeError, match="no embedded bus"):
        Adapters({}).sender

    class Target:
        def __init__(self) -> None:
            self.sent: list[str] = []

        async def send(self, entity: str, body: bytes, **kwargs: Any) -> list[int]:
            self.sent.append(entity)
            return [1]

    target = Target()
    set_default_target(target)
    try:
        adapters = Adapters({})
        assert isinstance(adapters.sender, EmbeddedMessageSender)
        await adapters.sender.send("events", [OutboundMessage(body=b"{}", message_id="m1")])
        assert target.sent == ["events"]
    finally:
        set_default_target(None)


async def test_service_bus_by_connection_string_or_namespace() -> None:
    by_string = Adapters({"AOS_MESSAGING": "azure", "ServiceBusConnection":
                          "Endpoint=sb://localhost;SharedAccessKeyName=Root;SharedAccessKey=KEY;UseDevelopmentEmulator=true;"})
    by_identity = Adapters({"AOS_MESSAGING": "azure", "ServiceBusConnection__fullyQualifiedNamespace":
                            "aos.servicebus.windows.net"}, credential=StubCredential())
    try:
        assert isinstance(by_string.sender, ServiceBusMessageSender)
        assert isinstance(by_identity.sender, ServiceBusMessageSender)
        assert by_identity.selection().messaging_target == "aos.servicebus.windows.net (managed identity)"
        with pytest.raises(ValueError, match="ServiceBusConnection"):
            Adapters({"AOS_MESSAGING": "azure"}).sender
    finally:
        await by_string.close()
        await by_identity.close()
