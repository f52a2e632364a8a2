"""The engine's hook for connected accounts (mcp/connect.py): tokens for tools, and links for users to connect."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ..mcp.connect import ConnectionFailed, ConnectLink, NotConnected
from ..ops.audit import AuditEvent
from ..public_url import base_url_for_host
from ..security.crypto import new_token
from .accounts import ConnectedAccounts
from .links import PATH, ConnectLinks, ConnectRequest
from .provider import ProviderUnreachable

POLL_SECONDS = 0.5


class EngineConnections:
    def __init__(
        self,
        accounts: ConnectedAccounts,
        links: ConnectLinks,
        public_url: str | None,
        audit: Callable[[AuditEvent], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.accounts = accounts
        self.links = links
        self.public_url = public_url
        self.audit = audit  # told of each link made
        self.clock = clock
        self.sleep = sleep

    def provides(self, connection: str) -> bool:
        return connection in self.accounts

    async def token(self, principal: Any, connection: str, scopes: tuple[str, ...]) -> str:
        if principal is None:
            raise NotConnected(connection)
        try:
            return await self.accounts.token(principal.subject, connection, scopes)
        except ProviderUnreachable as exc:
            raise ConnectionFailed(f"{self.accounts.providers[connection].label}: {exc}") from None

    async def link(
        self, principal: Any, connection: str, scopes: tuple[str, ...], tool: str, host: str | None, root: str
    ) -> ConnectLink:
        subject = principal.subject
        granted = await self.accounts.scopes(subject, connection)
        # A wider scope asks again for everything granted so far as well, so the new token keeps doing what the
        # old one did.
        asking = tuple(dict.fromkeys([*granted, *scopes]))
        elicitation_id = new_token(16)
        request = ConnectRequest(
            subject=subject,
            client_id=principal.client_id,
            connection=connection,
            scopes=asking,
            tool=tool,
            method=subject.split(":", 1)[0],
            elicitation_id=elicitation_id,
        )
        link = await self.links.create(request)
        url = f"{base_url_for_host(host, self.public_url, root)}{PATH}/{link}"
        label = self.accounts.providers[connection].label
        wanted = f" ({', '.join(scopes)})" if scopes else ""
        message = f"The tool {tool} needs access to your {label} account{wanted}. Open the link to connect it."
        if self.audit is not None:
            details = {"connection": connection, "tool": tool, "scopes": " ".join(asking)}
            self.audit(
                AuditEvent("connection.requested", subject=subject, client_id=principal.client_id, details=details)
            )
        return ConnectLink(url, elicitation_id, message)

    async def wait(self, principal: Any, connection: str, scopes: tuple[str, ...], seconds: float) -> bool:
        deadline = self.clock() + seconds
        while True:
            try:
                await self.token(principal, connection, scopes)
                return True
            except (NotConnected, ConnectionFailed):
                pass
            if self.clock() >= deadline:
                return False
            await self.sleep(POLL_SECONDS)
