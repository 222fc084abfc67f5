"""A stdio MCP server whose tool list changes after a call, for the tool-refresh tests.

``grow`` adds ``added`` and ``added_hidden``, removes ``doomed``, and then sends
``notifications/tools/list_changed`` — unless ``CHANGING_SILENT=1``, when the client can only
notice the change by listing the tools again.
"""

import os

from mcp.server.mcpserver import Context, MCPServer

app = MCPServer("changing")


def added(text: str) -> str:
    """A tool that exists only after ``grow``."""
    return f"added: {text}"


def added_hidden() -> str:
    """Another late tool, which the tests' config filters out."""
    return "hidden"


@app.tool()
def doomed() -> str:
    """A tool that ``grow`` removes."""
    return "still here"


@app.tool()
async def grow(ctx: Context) -> str:
    """Change the tool list, and say so unless told to stay silent."""
    app.add_tool(added)
    app.add_tool(added_hidden)
    app.remove_tool("doomed")
    if os.environ.get("CHANGING_SILENT") != "1":
        await ctx.session.send_tool_list_changed()
    return "grown"


if __name__ == "__main__":
    app.run()
