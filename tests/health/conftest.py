"""Fixtures for the health tests: an Azurite of the test's own, so that a test can stop it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from health_support import AZURITE, free_port

from kernel.adapters.azure_common import DEVELOPMENT_STORAGE


@pytest.fixture
def azurite(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A running Azurite for this test only: (its connection string, a function that stops it)."""
    if not AZURITE.exists() or shutil.which("node") is None:
        pytest.skip("Azurite is not installed (node_modules/.bin/azurite); `make test` installs it")
    blob, queue, table = free_port(), free_port(), free_port()
    log_path = tmp_path / "azurite.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(AZURITE), "--silent", "--inMemoryPersistence", "--disableTelemetry", "--skipApiVersionCheck",
             "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1", "--tableHost", "127.0.0.1",
             "--blobPort", str(blob), "--queuePort", str(queue), "--tablePort", str(table)],
            cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

        try:
            deadline = time.monotonic() + 30
            while not (_listening(blob) and _listening(table)):
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"Azurite did not start: {log_path.read_text()[-2000:]}")
                time.sleep(0.05)
            yield (DEVELOPMENT_STORAGE.replace("127.0.0.1:10000", f"127.0.0.1:{blob}")
                   .replace("127.0.0.1:10002", f"127.0.0.1:{table}")), stop
        finally:
            stop()


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0
