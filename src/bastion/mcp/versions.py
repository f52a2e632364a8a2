"""The protocol revisions Bastion speaks, and which era each belongs to.

Legacy revisions open with an `initialize` handshake and may keep a session; modern ones (2026-07-28 on)
carry version and capabilities in every request's `_meta` and keep no session.
"""

from __future__ import annotations

LEGACY = ("2025-06-18", "2025-11-25")
MODERN = ("2026-07-28",)
SUPPORTED = LEGACY + MODERN
LATEST_LEGACY = LEGACY[-1]
# MCP-Protocol-Version values accepted on a legacy session's requests: clients in the field still send
# older revisions' values on sessions that negotiated a newer one.
LEGACY_HEADERS = ("2024-11-05", "2025-03-26", *LEGACY)
LATEST = MODERN[-1]

META_PROTOCOL_VERSION = "io.modelcontextprotocol/protocolVersion"
META_CLIENT_CAPABILITIES = "io.modelcontextprotocol/clientCapabilities"
META_CLIENT_INFO = "io.modelcontextprotocol/clientInfo"
META_SERVER_INFO = "io.modelcontextprotocol/serverInfo"
META_LOG_LEVEL = "io.modelcontextprotocol/logLevel"
META_SUBSCRIPTION_ID = "io.modelcontextprotocol/subscriptionId"


def is_modern(version: str) -> bool:
    return version in MODERN


def negotiate_legacy(requested: object) -> str:
    """The revision answered to `initialize`: the client's if we speak it, else our latest legacy one."""
    if isinstance(requested, str) and requested in LEGACY:
        return requested
    return LATEST_LEGACY
