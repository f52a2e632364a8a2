"""A local HTTPS server for client metadata documents, with a throwaway CA, for CIMD tests.

Serves on 127.0.0.1 only, under the name cimd.test (certificate from tests/security/test_fetch.py's `pki`).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


class DocumentServer:
    def __init__(self) -> None:
        self.port = 0
        self.routes: dict[str, Reply] = {}
        self.hits: dict[str, int] = {}

    def url(self, path: str) -> str:
        return f"https://cimd.test:{self.port}{path}"

    def serve_document(
        self, path: str, document: dict[str, object] | None = None, cache: str | None = None, **fields: object
    ) -> str:
        """Publish a client metadata document naming itself; returns its URL (the client_id)."""
        url = self.url(path)
        body = (
            document
            if document is not None
            else {
                "client_id": url,
                "client_name": "CIMD Test App",
                "redirect_uris": ["http://127.0.0.1:3000/callback"],
                "token_endpoint_auth_method": "none",
                **fields,
            }
        )
        headers = {"Content-Type": "application/json"}
        if cache:
            headers["Cache-Control"] = cache
        self.routes[path] = Reply(200, orjson.dumps(body), headers)
        return url

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await reader.readuntil(b"\r\n\r\n")
            path = request.split(b" ", 2)[1].decode()
            self.hits[path] = self.hits.get(path, 0) + 1
            reply = self.routes.get(path, Reply(404, b"not found"))
            head = [f"HTTP/1.1 {reply.status} X", f"Content-Length: {len(reply.body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in reply.headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + reply.body)
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


@contextlib.asynccontextmanager
async def document_server(pki: dict[str, Path]) -> AsyncIterator[DocumentServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki["cert"], pki["key"])
    server = DocumentServer()
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=context)
    server.port = listener.sockets[0].getsockname()[1]
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()
