"""Streamable HTTP: the MCP endpoint as a plain ASGI application.

One endpoint serves both eras, kept apart: `endpoint` reads a request and hands it to `modern` (2026-07-28,
stateless) or `legacy` (2025-06-18 and 2025-11-25 sessions); `run` runs one MCP request for either; `wire`,
`reply` and `streams` read requests, write JSON or SSE answers, and follow connections. Sessions themselves
live in mcp.session, shared with stdio. Every request first passes the Host/Origin gate.
"""

from .endpoint import StreamableHTTP

__all__ = ["StreamableHTTP"]
