"""Bastion's OAuth 2.1 authorization server: metadata, register, authorize, token, revoke.

It knows nothing of MCP: it issues tokens for a resource, and `bastion.resource` checks them.
"""
