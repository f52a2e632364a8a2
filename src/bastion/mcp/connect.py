"""What the engine asks of connected accounts (a hook the composition root supplies; the engine knows no
provider): a caller's token at a connection, and when there is none, a link for the user to connect one, which
the engine hands to the client as a URL elicitation in the form of the request's protocol era.

  2026-07-28   input_required with an elicitation/create request in URL mode; the retry, once the user has
               been to the link, runs the tool
  2025-11-25   the URL-elicitation-required error (-32042) naming the link, if the client does URL elicitation
  otherwise    a tool error whose text carries the link
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


class NotConnected(Exception):
    """The caller has no usable token at this connection (none, too few scopes, or one the provider will not
    renew)."""


class ConnectionFailed(Exception):
    """The token exists but cannot be had now (the provider is not answering); the message is safe to show."""


@dataclass(frozen=True)
class ConnectLink:
    url: str
    elicitation_id: str
    message: str  # what the user reads: which application and tool asks to connect what


class ConnectionRequired(BaseException):
    """Raised by `ctx.upstream_token` inside a tool for a connection the user has not connected: the call ends
    and the client is asked to send the user to connect it. A BaseException so that a tool's `except Exception`
    does not swallow it."""

    def __init__(self, connection: str, scopes: tuple[str, ...]) -> None:
        super().__init__(connection)
        self.connection = connection
        self.scopes = scopes


class Connections(Protocol):
    def provides(self, connection: str) -> bool: ...

    async def token(self, principal: Any, connection: str, scopes: tuple[str, ...]) -> str:
        """The caller's access token at `connection` with `scopes` (renewed if it expires soon); NotConnected or
        ConnectionFailed."""
        ...

    async def link(
        self, principal: Any, connection: str, scopes: tuple[str, ...], tool: str, host: str | None, root: str
    ) -> ConnectLink:
        """A new single-use link for this caller to connect `connection` with `scopes`, for `tool`; `host` and
        `root` say where the request came to (for the link's URL when no public URL is set)."""
        ...

    async def wait(self, principal: Any, connection: str, scopes: tuple[str, ...], seconds: float) -> bool:
        """Wait up to `seconds` for the caller to finish connecting; whether they did."""
        ...


def holds_upstream(principal: Any, provider: str) -> bool:
    """Whether the caller brought a token for `provider` themselves (the worker API's context.authorization)."""
    upstream = getattr(principal, "upstream", None)
    return isinstance(upstream, Mapping) and provider in upstream


def serving(connections: Connections | None, principal: Any, provider: str) -> Connections | None:
    """The connected accounts to take `provider`'s token from for this caller: None when `provider` is no
    connection, or the caller brought its own token (then it is the sign-in provider's, or the caller's own)."""
    if connections is None or not connections.provides(provider) or holds_upstream(principal, provider):
        return None
    return connections
