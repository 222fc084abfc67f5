"""A streamable HTTP MCP server for the manager tests; rejects requests without the expected token.

Usage: http_server.py PORT; the expected bearer token comes from the environment (EXPECTED_TOKEN).
"""

import os
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from starlette.responses import PlainTextResponse

app = MCPServer("http-test")


@app.tool()
def greet(name: str) -> str:
    """Greet someone."""
    return f"hello {name}"


def main() -> None:
    port = int(sys.argv[1])
    expected = "Bearer " + os.environ["EXPECTED_TOKEN"]
    inner = app.streamable_http_app()

    async def guarded(scope, receive, send):
        if scope["type"] == "http":
            headers = dict(scope.get("headers") or [])
            if headers.get(b"authorization", b"").decode() != expected:
                await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
                return
        await inner(scope, receive, send)

    uvicorn.run(guarded, host="127.0.0.1", port=port, log_level="warning")


if __name__ == "__main__":
    main()
