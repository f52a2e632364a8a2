"""Running one MCP request on Streamable HTTP, in either era: dispatch to the server, cancellation when the
client leaves, and the error's status from the one table (with the step-up challenge on 403)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

from ..errors import McpError, http_status
from ..exchange import Exchange
from ..jsonrpc import Request, error_message, result_message
from ..policy import NEEDED_SCOPES, InsufficientScope
from ..server import Server
from ..session import Cancellable, Session
from .reply import Reply
from .streams import cancel_on_disconnect
from .wire import Receive

# (Host, the path the server is mounted at, needed scopes) -> headers of a step-up challenge; supplied by the
# authentication layer.
Challenge = Callable[[str | None, str, tuple[str, ...]], list[tuple[bytes, bytes]]]
USER_CODE_METHODS = frozenset({"tools/call", "prompts/get", "resources/read", "completion/complete"})


class Runner:
    def __init__(self, server: Server, challenge: Challenge | None = None) -> None:
        self.server = server
        self.challenge = challenge

    async def run(
        self,
        message: Request,
        ex: Exchange,
        reply: Reply,
        receive: Receive,
        session: Session | None,
        host: str | None,
        root: str = "",
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        handle = Cancellable(task)
        watcher = None
        if message.method in USER_CODE_METHODS:
            # Closing the connection cancels the call (the 2026-07-28 cancellation signal, and good manners).
            watcher = asyncio.create_task(cancel_on_disconnect(receive, handle, reply))
        if session is not None:
            session.in_flight[message.id] = handle
        try:
            result = await self.server.handle(ex, message.params)
            await reply.finish(result_message(message.id, result))
        except InsufficientScope as exc:
            # The authentication layer's step-up challenge (or, without one, the bare list of scopes).
            challenge = (
                self.challenge(host, root, exc.needed)
                if self.challenge is not None
                else [(NEEDED_SCOPES, " ".join(exc.needed).encode())]
            )
            await reply.finish(error_message(message.id, exc), http_status(exc), challenge)
        except McpError as exc:
            status = http_status(exc, in_session=not ex.modern)
            await reply.finish(error_message(message.id, exc), status, list(exc.headers))
        except asyncio.CancelledError:
            if not handle.requested:
                raise
            task.uncancel()
            # Cancelled on purpose: no response is owed; end the HTTP exchange quietly.
            with contextlib.suppress(Exception):
                await reply.finish(None)
        finally:
            if watcher is not None:
                watcher.cancel()
            if session is not None:
                session.in_flight.pop(message.id, None)
