"""Fixtures for the adapter contract tests: a real Azurite, and each port in both implementations.

Azurite (node_modules/.bin/azurite, installed by ``make test``) starts once per session on free
loopback ports with in-memory persistence. Every test gets its own container or table name, so
tests never see each other's data.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from kernel.adapters.azure_common import DEVELOPMENT_STORAGE

REPO = Path(__file__).resolve().parents[2]
AZURITE = REPO / "node_modules" / ".bin" / "azurite"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _connection_string(blob_port: int, table_port: int) -> str:
    return (
        DEVELOPMENT_STORAGE
        .replace("127.0.0.1:10000", f"127.0.0.1:{blob_port}")
        .replace("127.0.0.1:10002", f"127.0.0.1:{table_port}")
    )


@pytest.fixture(scope="session")
def azurite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The connection string of a running Azurite (blob and table endpoints on free ports)."""
    if not AZURITE.exists() or shutil.which("node") is None:
        pytest.skip("Azurite is not installed (node_modules/.bin/azurite); `make test` installs it")
    workdir = tmp_path_factory.mktemp("azurite")
    last_error = ""
    for _attempt in range(3):
        blob, queue, table = _free_port(), _free_port(), _free_port()
        log = open(workdir / "azurite.log", "w")
        process = subprocess.Popen(
            [str(AZURITE), "--silent", "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck",
             "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
             "--blobPort", str(blob), "--queuePort", str(queue), "--tablePort", str(table)],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and process.poll() is None:
            if _listening(blob) and _listening(table):
                break
            time.sleep(0.05)
        if process.poll() is None and _listening(blob) and _listening(table):
            try:
                yield _connection_string(blob, table)
            finally:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                log.close()
            return
        process.kill()
        process.wait()
        log.close()
        last_error = (workdir / "azurite.log").read_text()[-2000:]
    pytest.fail(f"Azurite did not start: {last_error}")


@pytest.fixture
def unique() -> str:
    """A fresh lowercase suffix for container and table names."""
    return uuid.uuid4().hex[:12]


@pytest.fixture(params=["embedded", "embedded-fsync", "azure"])
async def blob_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    if request.param.startswith("embedded"):  # without fsync, small writes run inline
        from kernel.adapters.embedded_blob import EmbeddedBlobStore

        store: object = EmbeddedBlobStore(tmp_path / "blobs", fsync=request.param == "embedded-fsync")
    else:
        from kernel.adapters.azure_blob import AzureBlobStore

        store = AzureBlobStore(connection_string=request.getfixturevalue("azurite"))
    try:
        yield store
    finally:
        await store.close()  # type: ignore[attr-defined]


@pytest.fixture(params=["embedded", "azure"])
async def table_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[object]:
    if request.param == "embedded":
        from kernel.adapters.embedded_table import EmbeddedTableStore

        store: object = EmbeddedTableStore(tmp_path / "tables.sqlite")
    else:
        from kernel.adapters.azure_table import AzureTableStore

        store = AzureTableStore(connection_string=request.getfixturevalue("azurite"))
    try:
        yield store
    finally:
        await store.close()  # type: ignore[attr-defined]
