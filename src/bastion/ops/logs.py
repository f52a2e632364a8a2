"""The server's log: one line per record on stderr (stdout belongs to the protocol on stdio), as text or as JSON
lines.

JSON field names are stable, since operators' queries and alerts depend on them: `ts` (UTC, RFC 3339 with
milliseconds), `level`, `logger`, `msg`, `exc` (a traceback, when there is one), and whatever a record carries
in its `fields` extra (the access log's, ops/access.py). Text lines are `ts LEVEL logger: msg`.

What reaches a line is chosen where it is logged, never dumped wholesale: no record carries a token, code, secret
or cookie (tests/ops/test_no_secrets_in_logs.py walks a whole OAuth session and looks for each one).
Client-supplied text is made safe for a line: control characters escaped (a path cannot forge a second line)
and length bounded.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any, Literal

import orjson

FIELDS = "fields"  # the extra under which a record carries its structured fields
TEXT_LIMIT = 200  # characters kept of a client-supplied value
Format = Literal["text", "json"]


def configure_logging(level: str, log_format: Format = "text") -> None:
    """Send every logger's records (uvicorn's included) to stderr in `log_format`, from `level` up."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):  # uvicorn's own handlers would print twice
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True


def clean(value: object, limit: int = TEXT_LIMIT) -> str:
    """`value` as text fit for one log line: control characters escaped, at most `limit` characters kept."""
    text = str(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


class _Stamps:
    """RFC 3339 UTC timestamps, the date and time part formatted once per second (strftime is the slow part)."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second, self._prefix = second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((created - second) * 1000):03d}Z"


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._stamp = _Stamps()

    def format(self, record: logging.LogRecord) -> str:
        line = f"{self._stamp(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._stamp = _Stamps()

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": self._stamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, FIELDS, None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()
