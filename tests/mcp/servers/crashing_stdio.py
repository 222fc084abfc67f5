"""A stdio MCP server for the breaker and reference tests: it starts fine, then breaks.

``crash`` ends the process on every call (exit code 5), after writing its arguments and working
directory to stderr; ``ok`` answers; ``where`` returns its arguments and working directory. With
``CRASHING_EXIT_AFTER=SECONDS`` the process also ends (exit code 4) that long after its tools were
first listed, that is after the client saw it ready, without any call.
"""

import json
import os
import sys
import threading

from mcp.server.mcpserver import MCPServer


class ExitingServer(MCPServer):
    """Starts the idle-exit timer when the client first lists the tools (its last start step)."""

    timer: threading.Timer | None = None

    async def list_tools(self):
        delay = os.environ.get("CRASHING_EXIT_AFTER")
        if delay and self.timer is None:
            self.timer = threading.Timer(float(delay), os._exit, [4])
            self.timer.start()
        return await super().list_tools()


app = ExitingServer("crashing")


@app.tool()
def ok() -> str:
    """Answer normally."""
    return "fine"


@app.tool()
def where() -> str:
    """The process's arguments and working directory, as JSON."""
    return json.dumps({"argv": sys.argv[1:], "cwd": os.getcwd()})


@app.tool()
def crash() -> str:
    """End the process mid-call."""
    print(f"crashing on purpose; argv={sys.argv[1:]}; cwd={os.getcwd()}", file=sys.stderr, flush=True)
    os._exit(5)


if __name__ == "__main__":
    app.run()
