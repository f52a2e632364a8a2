"""A server written with FastMCP (the standalone package), for the gateway's tests: over stdio by default, over
Streamable HTTP with `http PORT`. It answers who it is and which process it runs in."""

from __future__ import annotations

import os
import sys

from fastmcp import FastMCP

server = FastMCP("fastmcp-notes")


@server.tool
def echo(text: str) -> str:
    """Say it back, saying who says it."""
    return f"fastmcp: {text}"


@server.tool
def pid() -> str:
    """The id of this server's process."""
    return str(os.getpid())


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run(transport="http", host="127.0.0.1", port=int(sys.argv[2]), show_banner=False, log_level="warning")
    else:
        server.run(show_banner=False)
