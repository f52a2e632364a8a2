"""The MCP engine: JSON-RPC, protocol revisions, dispatch, Streamable HTTP and stdio.

This package knows nothing of OAuth: it sees a Principal (or None) handed in by the transport.
"""
