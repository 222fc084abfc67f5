"""A tiny stdio MCP server for the manager tests: a normal tool, one that crashes, one that hangs."""

import os
import sys

import anyio
from mcp.server.mcpserver import MCPServer

app = MCPServer("flaky")


@app.tool()
def add(a: int, b: int) -> str:
    """Add two integers."""
    return str(a + b)


@app.tool()
def crash() -> str:
    """Kill the server process mid-call."""
    os._exit(3)


@app.tool()
async def hang(seconds: float) -> str:
    """Sleep, to exercise call timeouts."""
    await anyio.sleep(seconds)
    return "woke up"


@app.tool()
def fail() -> str:
    """A tool that reports an error result."""
    raise ValueError("this tool always fails")


if __name__ == "__main__":
    if os.environ.get("FLAKY_REFUSE_START") == "1":
        sys.exit(7)
    app.run()
