"""The MCP server a developer command talks to: a server file, served in process (bastion.testing), or one
running at a URL (any framework, either protocol era). Both answer the same few requests."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator
from typing import Any, Protocol

from .refuse import refuse
from .target import load_app

TIMEOUT = 30.0


class Peer(Protocol):
    name: str  # what the server calls itself
    protocol: str  # the revision spoken
    app: Any  # the App, for a server file (its registry tells what scopes each tool needs); None for a URL

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]: ...


def peer_options(parser: argparse.ArgumentParser) -> None:
    """The options of every command that talks to a server file or URL (after its target and own arguments)."""
    parser.add_argument("--protocol", help="the revision to speak (default: the newest the server speaks)")
    parser.add_argument(
        "--header", action="append", default=[], help="for a URL: a header to send, e.g. 'Authorization: Bearer ...'"
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a server file that fails to load")


def is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


@contextlib.asynccontextmanager
async def open_peer(
    target: str, protocol: str | None, headers: dict[str, str], debug: bool = False
) -> AsyncIterator[Peer]:
    if is_url(target):
        async with _url_peer(target, protocol, headers) as peer:
            yield peer
        return
    if headers:
        refuse("--header is for a server at a URL; a server file is served in process, without authentication")
    from ..mcp import versions
    from ..testing import TestClient

    app = load_app(target, debug)
    if protocol is not None and protocol not in versions.SUPPORTED:
        refuse(f"--protocol {protocol!r}: use one of {', '.join(versions.SUPPORTED)}")
    client = TestClient(app, protocol=protocol or versions.LATEST)
    async with client:
        yield _FilePeer(app, client)


class _FilePeer:
    def __init__(self, app: Any, client: Any) -> None:
        self.app = app
        self.client = client
        self.name = app.name
        self.protocol = client.protocol

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        from ..testing import ClientError

        try:
            result: dict[str, Any] = await self.client.request(method, params)
        except ClientError as exc:
            refuse(f"{method}: the server answered {exc.code}: {exc.message}")
        return result


@contextlib.asynccontextmanager
async def _url_peer(url: str, protocol: str | None, headers: dict[str, str]) -> AsyncIterator[Peer]:
    from ..gateway.client import BackendUnavailable, McpClient
    from ..http_client import Origin
    from ..mcp.errors import McpError

    client = McpClient(Origin(url, timeout=TIMEOUT), headers=headers, version=protocol or "auto")
    try:
        try:
            info = await client.connect()
        except (BackendUnavailable, McpError) as exc:
            refuse(
                f"{url}: {exc} (is it an MCP server, and does it want a token? --header 'Authorization: Bearer ...')"
            )
        yield _UrlPeer(client, info)
    finally:
        await client.close()


class _UrlPeer:
    app = None

    def __init__(self, client: Any, info: dict[str, Any]) -> None:
        self.client = client
        server = info.get("serverInfo") or (info.get("_meta") or {}).get("io.modelcontextprotocol/serverInfo") or {}
        self.name = str(server.get("name") or "?")
        self.protocol = str(client.version)

    async def request(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        from ..gateway.client import BackendUnavailable
        from ..mcp.errors import McpError

        async def refuse_questions(message: dict[str, Any]) -> None:
            if "id" in message and "method" in message:  # a question for the user: nobody here to answer it
                asked = McpError(-32601, f"bastion cannot answer {message['method']} from the command line")
                await self.client.respond(message["id"], asked)

        try:
            result: dict[str, Any] = await self.client.request(method, params, refuse_questions)
        except McpError as exc:
            refuse(f"{method}: the server answered {exc.code}: {exc.message}")
        except BackendUnavailable as exc:
            refuse(f"{method}: {exc}")
        return result


async def listed(peer: Peer, method: str, key: str) -> list[dict[str, Any]]:
    """Every item of a list method, page after page."""
    from ..testing import every_page

    return await every_page(peer.request, method, key)
