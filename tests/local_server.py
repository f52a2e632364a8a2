"""Serve an ASGI app on 127.0.0.1 in a background thread, for stand-ins of servers that live elsewhere."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from tests.waiting import free_port, wait_until

__all__ = ["free_port", "serve_in_thread"]


@contextmanager
def serve_in_thread(app: Any, port: int) -> Iterator[str]:
    """Run `app` on 127.0.0.1:`port` until the block ends; yields its base URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started or not thread.is_alive(), f"the local server on port {port} starting")
    if not server.started:
        raise RuntimeError(f"the local server on port {port} did not start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
