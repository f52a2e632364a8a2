"""A stdio MCP server written with the official Python SDK, for the gateway's tests: it tells its process id and
what its environment holds, and can crash on request."""

import os

from mcp.server.mcpserver import Context, MCPServer

server = MCPServer("stdio-notes")


@server.tool()
def pid() -> int:
    """This process's id."""
    return os.getpid()


@server.tool()
def env(name: str) -> str:
    """A variable of this process's environment ("" if unset)."""
    return os.environ.get(name, "")


@server.tool()
def crash() -> str:
    """End this process at once."""
    os._exit(3)


@server.tool()
async def work(ctx: Context) -> str:
    """Report progress, then finish."""
    await ctx.report_progress(1, 2, "halfway")
    return "done"


if __name__ == "__main__":
    server.run("stdio")
