"""A stdio MCP transport that gives the server exactly the environment it is handed.

The SDK's ``mcp.client.stdio.stdio_client`` always merges a default environment (HOME, LOGNAME,
PATH, SHELL, TERM, USER) into the child's; the platform promises a stdio server *only* its declared
environment, so this transport spawns the process itself with the exact mapping and otherwise
follows the SDK's transport: newline-delimited JSON-RPC over the pipes, its own process group, and
the SDK's shutdown sequence (close stdin, wait, then kill the tree). It reuses the SDK's pipe
helpers from ``mcp.client.stdio`` (``mcp`` is pinned), and also yields the process so a supervisor
can notice it exiting while idle.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, IO

import anyio
import anyio.lowlevel
from anyio.abc import Process
from anyio.streams.text import TextReceiveStream

from mcp.client.stdio import _aclose_all, _drain_stdout, _parse_line, _stop_server_process
from mcp.shared.message import SessionMessage


@asynccontextmanager
async def isolated_stdio_client(
    command: str,
    args: list[str],
    env: dict[str, str],
    cwd: str | Path | None,
    stderr: IO[Any] | int | None,
) -> AsyncGenerator[tuple[Any, Any, Process], None]:
    """Spawn ``command`` with exactly ``env``; yields (read stream, write stream, process)."""
    process = await anyio.open_process(
        [command, *args], env=env, stderr=stderr, cwd=cwd, start_new_session=True
    )
    read_writer, read_stream = anyio.create_memory_object_stream[SessionMessage | Exception](0)
    write_stream, write_reader = anyio.create_memory_object_stream[SessionMessage](0)
    writer_done = anyio.Event()

    async def stdout_reader() -> None:
        assert process.stdout is not None
        stdout = TextReceiveStream(process.stdout, encoding="utf-8", errors="strict")
        try:
            async with read_writer:
                try:
                    buffer = ""
                    async for chunk in stdout:
                        lines = (buffer + chunk).split("\n")
                        buffer = lines.pop()
                        for line in lines:
                            try:
                                await read_writer.send(_parse_line(line))
                            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                                return
                finally:
                    await _drain_stdout(process)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, ConnectionError):
            pass  # the process went away; the session sees the stream close

    async def stdin_writer() -> None:
        assert process.stdin is not None
        try:
            async with write_reader:
                async for message in write_reader:
                    data = message.message.model_dump_json(by_alias=True, exclude_unset=True) + "\n"
                    await process.stdin.send(data.encode("utf-8"))
        except (anyio.ClosedResourceError, anyio.BrokenResourceError, OSError):
            await read_writer.aclose()
        finally:
            writer_done.set()

    async def shutdown() -> None:
        read_stream.close()
        write_stream.close()
        with anyio.move_on_after(0.5):
            await writer_done.wait()
        await _stop_server_process(process)
        await _aclose_all(read_stream, write_stream, read_writer, write_reader)
        await anyio.lowlevel.checkpoint()

    async with anyio.create_task_group() as group:
        group.start_soon(stdout_reader)
        group.start_soon(stdin_writer)
        try:
            yield read_stream, write_stream, process
        finally:
            with anyio.CancelScope(shield=True):
                await shutdown()
            group.cancel_scope.cancel()
    await anyio.lowlevel.cancel_shielded_checkpoint()
