"""Fronting MCP servers Bastion did not write: an ASGI application in this process (asgi.py)."""
