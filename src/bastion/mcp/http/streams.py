"""Following a connection: copying queued notifications to an SSE stream, and noticing the client leave."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from ..session import Cancellable
from .reply import Reply
from .wire import Receive

KEEPALIVE_SECONDS = 15.0


def enqueue(queue: asyncio.Queue[dict[str, Any]]) -> Callable[[dict[str, Any]], Awaitable[None]]:
    async def put(message: dict[str, Any]) -> None:
        if queue.full():  # a slow reader loses the oldest notification, not the server's memory
            queue.get_nowait()
        queue.put_nowait(message)

    return put


async def pump(queue: asyncio.Queue[dict[str, Any]], reply: Reply, receive: Receive) -> None:
    """Copy queued messages to an SSE stream, with keep-alive comments, until the client goes away."""
    gone = asyncio.create_task(wait_disconnect(receive))
    try:
        while not gone.done():
            getter = asyncio.ensure_future(queue.get())
            done, _ = await asyncio.wait({getter, gone}, timeout=KEEPALIVE_SECONDS, return_when=asyncio.FIRST_COMPLETED)
            if getter in done:
                await reply.event(getter.result())
            else:
                getter.cancel()
                if not done:
                    await reply.keepalive()
    finally:
        gone.cancel()


async def wait_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def cancel_on_disconnect(receive: Receive, handle: Cancellable, reply: Reply) -> None:
    """Cancel a call whose client closed the connection (the 2026-07-28 cancellation signal)."""
    while True:
        event = await receive()
        if event["type"] == "http.disconnect":
            # A detached call ended its response on purpose and goes on for a client that will resume.
            if not reply.detached:
                handle.cancel()
            return
