"""Store faults on the wire: when the store cannot answer, every route of the authorization server says so.

The store raises StoreUnavailable when it is locked, full or closed. Here, in one place, that becomes a 503 in
the form the caller reads: `temporarily_unavailable` OAuth JSON (with Retry-After, never cached) for the API
endpoints, a plain page for the browser's. Nothing of the fault reaches the caller. The log gets one warning
line naming the route as declared (not the request's path or query, which the caller wrote and which can carry
codes and state) and the store's condition; the traceback only at debug level.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..ops.sampled import SampledLog
from ..store import StoreUnavailable
from .errors import NO_STORE, RETRY_AFTER_SECONDS, temporarily_unavailable
from .pages import unavailable_page

log = logging.getLogger("bastion.oauth")
Answer = Callable[[], Response]


def json_answer() -> Response:
    error = temporarily_unavailable()
    return JSONResponse(error.body(), error.status, headers={**NO_STORE, **error.headers})


def page_answer() -> Response:
    return unavailable_page(RETRY_AFTER_SECONDS)


class StoreFaults:
    """ASGI wrapper around one route's app: a StoreUnavailable raised before the response began is answered."""

    def __init__(self, app: Any, answer: Answer, path: str, sampled: SampledLog) -> None:
        self.app = app
        self.answer = answer
        self.path = path
        self.sampled = sampled  # one line per period however many requests fail

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        started = False

        async def watched(message: Any) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, watched)
        except StoreUnavailable as exc:
            if started:  # too late to answer anything else; the server closes the connection
                raise
            self.sampled.warning("store unavailable: %s %s answered 503 (%s)", scope.get("method"), self.path, exc)
            log.debug("store fault", exc_info=True)
            await self.answer()(scope, receive, send)


def answering_store_faults(routes: Iterable[BaseRoute], answer: Answer) -> list[BaseRoute]:
    """The routes, each answering its store faults with `answer()` (wrapping the app the route built, so
    whatever else it carries, middleware or body limits, stays in place)."""
    sampled = SampledLog(log)
    guarded = list(routes)
    for route in guarded:
        if not isinstance(route, Route):
            raise TypeError(f"cannot guard {route!r} against store faults: only Route is supported")
        route.app = StoreFaults(route.app, answer, route.path, sampled)
    return guarded
