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
import os
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

FIELDS = "fields"  # the extra under which a record carries its structured fields
FLUSH_SECONDS = 0.2  # how long an info line may wait to be written with others
BLOCK_LINES = 256  # written at once when this many lines wait (about 64 KiB of access lines)
TEXT_LIMIT = 200  # characters kept of a client-supplied value
Format = Literal["text", "json"]


def configure_logging(level: str, log_format: Format = "text") -> None:
    """Send every logger's records (uvicorn's included) to stderr in `log_format`, from `level` up."""
    try:
        handler: logging.Handler = BlockWriter(sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # stderr replaced by something without a descriptor (a test)
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Neither format shows the caller's file and line, thread or process: not looking them up saves about 2 us
    # of every record (the logging HOWTO's own advice), which the access log writes for every request.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
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


class Line(Protocol):
    """What a line says, asked when its block is written: its message, and its fields for JSON."""

    def text(self) -> str: ...

    def fields(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class Said:
    """A record's message and fields, as a Line."""

    message: str
    extra: dict[str, Any]

    def text(self) -> str:
        return self.message

    def fields(self) -> dict[str, Any]:
        return self.extra


# A line not yet formatted: (created, level name, logger name, what it says). The access log hands these to a
# BlockWriter directly, skipping the logging machinery's cost per record (bench/operations.py), and builds
# neither its message nor its fields until the line is written (a text line never needs the fields).
Entry = tuple[float, str, str, Line]


class LineFormatter(logging.Formatter):
    """A formatter that also formats an Entry."""

    def __init__(self) -> None:
        super().__init__()
        self._stamp = _Stamps()

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, FIELDS, None)
        said = Said(record.getMessage(), fields if isinstance(fields, dict) else {})
        exc = self.formatException(record.exc_info) if record.exc_info else None
        return self.line((record.created, record.levelname, record.name, said), exc)

    def line(self, entry: Entry, exc: str | None = None) -> str:
        raise NotImplementedError


class TextFormatter(LineFormatter):
    def line(self, entry: Entry, exc: str | None = None) -> str:
        created, level, name, said = entry
        text = f"{self._stamp(created)} {level} {name}: {said.text()}"
        return f"{text}\n{exc}" if exc else text


class JsonFormatter(LineFormatter):
    def line(self, entry: Entry, exc: str | None = None) -> str:
        created, level, name, said = entry
        out: dict[str, Any] = {"ts": self._stamp(created), "level": level.lower(), "logger": name, "msg": said.text()}
        out.update(said.fields())
        if exc:
            out["exc"] = exc
        return orjson.dumps(out, default=str).decode()


class BlockWriter(logging.Handler):
    """Lines to a file descriptor in blocks: one write per block rather than per line, which at thousands of
    access lines a second is the difference between a few percent of the server's time and a third of it
    (bench/operations.py). Warnings and above are written at once, with whatever waits before them; other lines
    wait at most FLUSH_SECONDS (a thread of the handler's own writes them) or until BLOCK_LINES are waiting.
    Closing (logging.shutdown, at exit) writes what is left; a SIGKILL loses at most the last FLUSH_SECONDS of
    info lines. Lines wait in a deque: adding one takes no lock (the access log adds one per request), and the
    writer takes them from the other end in order."""

    def __init__(self, fd: int, flush_seconds: float = FLUSH_SECONDS) -> None:
        super().__init__()
        self.fd = fd
        self._writing = threading.Lock()  # one writer at a time, so that blocks keep their order
        self._waiting: deque[str | Entry] = deque()
        self._stopped = threading.Event()
        self._flusher = threading.Thread(target=self._every, args=(flush_seconds,), name="bastion-log", daemon=True)
        self._flusher.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._waiting.append(line)
        if record.levelno >= logging.WARNING or len(self._waiting) >= BLOCK_LINES:
            self.flush()

    def add(self, entry: Entry) -> None:
        """An info or debug line, formatted when its block is written (the access log's way in)."""
        self._waiting.append(entry)
        if len(self._waiting) >= BLOCK_LINES:
            self.flush()

    def flush(self) -> None:
        with self._writing:
            waiting, take = self._waiting, self._waiting.popleft
            items = [take() for _ in range(len(waiting))]  # what waits now; later lines go in the next block
            if not items:
                return
            formatter = self.formatter
            lines = (
                item if isinstance(item, str) else formatter.line(item) + "\n"  # type: ignore[union-attr]
                for item in items
            )
            data = "".join(lines).encode("utf-8", "backslashreplace")
            while data:
                try:
                    written = os.write(self.fd, data)
                except InterruptedError:
                    continue
                except OSError:
                    return  # stderr is gone (a closed pipe): nothing left to tell
                data = data[written:]

    def close(self) -> None:
        self._stopped.set()
        self.flush()
        super().close()

    def _every(self, seconds: float) -> None:
        while not self._stopped.wait(seconds):
            if self._waiting:
                self.flush()


def direct_writer(logger: logging.Logger) -> BlockWriter | None:
    """The BlockWriter that `logger`'s lines end in when nothing else could see them on the way (no handler or
    filter of its own or of a parent, one handler at the root, with a LineFormatter): then a line can go to it
    directly. None otherwise (logging configured by someone else): lines go through `logging`."""
    current: logging.Logger | None = logger
    while current is not None and current.parent is not None:
        if current.handlers or current.filters or not current.propagate:
            return None
        current = current.parent
    root = logging.getLogger()
    if len(root.handlers) != 1 or root.filters:
        return None
    [handler] = root.handlers
    if not isinstance(handler, BlockWriter) or handler.filters or handler.level != logging.NOTSET:
        return None
    return handler if isinstance(handler.formatter, LineFormatter) else None
