"""The access log: one line per HTTP request (logger `bastion.access`, level info), written when it ends.

JSON fields: `request_id`, `method`, `path` (never the query string: codes and states travel there), `status`,
`duration_ms`, `client_addr`, `subject` and `client_id` (the authenticated principal, when there is one), and
for MCP requests `mcp_method` and `mcp_target` (the tool or prompt name, or the resource URI). A text line says
the same in one readable line.

Every request gets an id, written or not (`access_log = false` turns the lines off, not the ids: the audit
trail names them). It is the caller's `X-Request-Id` when that is a plain token of at most 64 characters (a
proxy's, so that its log and Bastion's meet), else a fresh one; either way it goes back in the response's
`X-Request-Id`, so that a user's report can be found in the log. A request whose application fails before
answering is logged with status 500. Successful health checks (`/healthz`) are logged at debug level only.
"""

from __future__ import annotations

import itertools
import logging
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ..principal import SCOPE_KEY, Principal
from .logs import FIELDS, TEXT_LIMIT, clean, direct_writer

NOTE_KEY = "bastion.note"  # where inner layers find the RequestNote of the request they serve
REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
HEALTH = "/healthz"
METHOD_LIMIT, MCP_LIMIT = 16, 64  # characters kept of an HTTP method and an MCP method (TEXT_LIMIT of the rest)


@dataclass(slots=True)
class RequestNote:
    """What inner layers tell the access log about a request: the MCP engine, its method and target."""

    request_id: str = ""
    mcp_method: str | None = None
    mcp_target: str | None = None


def note_of(scope: Mapping[str, Any]) -> RequestNote | None:
    """The request's note, when an access log is listening."""
    note = scope.get(NOTE_KEY)
    return note if isinstance(note, RequestNote) else None


class AccessLog:
    def __init__(self, app: Any, logger: logging.Logger | None = None, *, lines: bool = True) -> None:
        self.app = app
        self.log = logger or logging.getLogger("bastion.access")
        self.lines = lines  # access_log: without it, requests still get their id (the audit trail names it)
        # Straight to the process's log writer when Bastion configured the log (bastion serve): a line then costs
        # a tuple, formatted with others when written; through `logging` otherwise (an embedding server's setup).
        self._direct = direct_writer(self.log)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        echo = (b"x-request-id", request_id.encode())
        note = RequestNote(request_id)
        scope[NOTE_KEY] = note
        status = 500  # unless the application answers

        async def noted(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), echo]}
            await send(message)

        try:
            await self.app(scope, receive, noted)
        finally:
            if self.lines and self.log.isEnabledFor(logging.INFO):
                self._write(scope, note, request_id, status, (time.perf_counter() - started) * 1000)

    def _write(self, scope: Any, note: RequestNote, request_id: str, status: int, ms: float) -> None:
        path = scope["path"]
        # Health checks come every few seconds from every load balancer: kept out of the log unless at debug.
        level = logging.DEBUG if path == HEALTH and status == 200 else logging.INFO
        if level != logging.INFO and not self.log.isEnabledFor(level):
            return
        client = scope.get("client")
        principal = scope.get(SCOPE_KEY)
        line = AccessLine(
            client[0] if client else None,
            scope["method"],
            path,
            status,
            ms,
            request_id,
            principal,
            note.mcp_method,
            note.mcp_target,
        )
        if self._direct is None:
            self.log.log(level, line.text(), extra={FIELDS: line.fields()})
        else:
            self._direct.add((time.time(), "INFO" if level == logging.INFO else "DEBUG", self.log.name, line))


@dataclass(slots=True)
class AccessLine:
    """One request's line, its text and fields made (and client-supplied values cleaned) when it is written."""

    address: str | None
    method: str
    path: str
    status: int
    ms: float
    request_id: str
    principal: Principal | None
    mcp_method: str | None
    mcp_target: str | None

    def text(self) -> str:
        # Usually every part is printable and short: the line is then checked whole, once, instead of part by part.
        line = f'{self.address or "-"} "{self.method} {self.path}" {self.status} {self.ms:.1f}ms id={self.request_id}'
        if self.principal is not None:
            line += f" sub={self.principal.subject} client={self.principal.client_id}"
        if self.mcp_method is not None:
            line += (
                f" mcp={self.mcp_method}" if self.mcp_target is None else f" mcp={self.mcp_method} {self.mcp_target}"
            )
        short = len(line) <= TEXT_LIMIT and len(self.method) <= METHOD_LIMIT and len(self.mcp_method or "") <= MCP_LIMIT
        return line if short and line.isprintable() else self._cleaned()

    def _cleaned(self) -> str:
        """The line with each client-supplied part made safe and bounded on its own."""
        method, path = clean(self.method, METHOD_LIMIT), clean(self.path)
        line = f'{self.address or "-"} "{method} {path}" {self.status} {self.ms:.1f}ms id={self.request_id}'
        if self.principal is not None:
            line += f" sub={clean(self.principal.subject)} client={clean(self.principal.client_id)}"
        if self.mcp_method is not None:
            line += f" mcp={clean(self.mcp_method, MCP_LIMIT)}"
            if self.mcp_target is not None:
                line += f" {clean(self.mcp_target)}"
        return line

    def fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {
            "request_id": self.request_id,
            "method": self.method,
            "path": clean(self.path),
            "status": self.status,
            "duration_ms": round(self.ms, 2),
            "client_addr": self.address,
        }
        if self.principal is not None:
            fields["subject"] = clean(self.principal.subject)
            fields["client_id"] = clean(self.principal.client_id)
        if self.mcp_method is not None:
            fields["mcp_method"] = clean(self.mcp_method, MCP_LIMIT)
            if self.mcp_target is not None:
                fields["mcp_target"] = clean(self.mcp_target)
        return fields


# Fresh ids: this process's random prefix and a counter. Unique and cheap; an id is a name, never a credential.
_PREFIX = secrets.token_hex(4)
_NEXT = itertools.count(1)


def _request_id(scope: Any) -> str:
    for name, value in scope["headers"]:
        if name == b"x-request-id":
            text: str = value.decode("latin-1")
            if REQUEST_ID.fullmatch(text):
                return text
            break
    return f"{_PREFIX}{next(_NEXT) & 0xFFFFFFFF:08x}"
