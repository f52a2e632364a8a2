"""The audit trail: security events, kept in the store as a hash chain, and copied to a sink for a SIEM.

An event is what happened (`type`, e.g. "token.refreshed"), how it ended (`outcome`: "success" or "failure"),
and who and where: subject, client id, grant id, client address, request id, and `details` that never hold a
secret. `AuditTrail.record` never waits and never fails its caller: events queue in the process and one writer
task appends them, in order, a batch per commit.

The chain (store/keys.py): `audit:<chain>:<n>` holds event n with the hash of event n-1 (`prev`) and its own
(`hash` = SHA-256 over `prev` and the event's canonical JSON); `audittip:<chain>` names the newest event and its
hash; `auditrev:<chain>:<n>` exists while the chain is n events long. Appending k events is one commit that
consumes `auditrev:<chain>:<n>` and writes events n+1..n+k, the tip and `auditrev:<chain>:<n+k>`: of two
instances appending at once one wins and the other reads the new tip and tries again, so numbers never repeat
or skip, on every backend. `verify` walks the chain: an event edited, removed or added out of turn, or a tip that
does not name the last event, breaks it, and the first broken link is named. Events older than the retention
expire from the oldest end; the chain then starts at the oldest event kept.

What a hash chain proves and what it does not: anyone who edits the store can be seen to have done so, unless
they recompute every hash after the edit, which needs nothing secret. Copies sent to the sink (outside the
store's reach) are what make that rewrite visible too: compare the sink's hashes with the store's.

While the store is down events wait in the process (up to MAX_WAITING, the oldest dropped beyond and counted in
the log) and are appended when it is back; a process killed meanwhile loses what waited.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import hashlib
import logging
import os
import sys
import time
from collections import deque
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import orjson

from ..principal import SCOPE_KEY
from ..settings.audit import AuditSettings
from ..store import Commit, Store, StoreUnavailable, keys
from .access import note_of
from .sampled import SampledLog

log = logging.getLogger("bastion.audit")
sampled = SampledLog(log)

CHAIN = "main"
GENESIS = "0" * 64  # the `prev` of the first event ever
MAX_WAITING = 10_000
SEARCH_PAGE = 500  # events read per round trip while searching
BATCH = 200  # events appended by one commit at most
RETRY_SECONDS = 1.0  # after the store failed, before trying again
APPEND_ATTEMPTS = 32  # lost races with other instances before this batch waits for the next round

Sink = Callable[[bytes], None]  # one JSON line (with its newline) per event, after it is stored

# The ASGI scope of the request being served, bound by the layer that handles it, so that events raised deeper
# down (a replay found by the grants, a step-up refused by the MCP engine) name its client address, request id
# and caller too. Binding is one set per request; the scope is read only when an event is recorded.
_REQUEST: ContextVar[Mapping[str, Any] | None] = ContextVar("bastion_audit_request", default=None)
SAMPLE_SECONDS = 60.0  # events anyone can cause at will (invalid tokens): at most one stored per kind per period


def bind_request(scope: Mapping[str, Any]) -> None:
    """Name the request this task serves, for the events it records."""
    _REQUEST.set(scope)


def _request_parts(scope: Mapping[str, Any] | None) -> tuple[str | None, str | None, str | None, str | None]:
    """(client address, request id, subject, client id) of a bound request."""
    if scope is None:
        return None, None, None, None
    client = scope.get("client")
    note = note_of(scope)
    principal = scope.get(SCOPE_KEY)
    return (
        client[0] if client else None,
        note.request_id or None if note else None,
        getattr(principal, "subject", None),
        getattr(principal, "client_id", None),
    )


@dataclass(frozen=True)
class AuditEvent:
    type: str
    outcome: str = "success"
    subject: str | None = None
    client_id: str | None = None
    grant_id: str | None = None
    client_addr: str | None = None
    request_id: str | None = None
    details: Mapping[str, str | int | float | bool | None] = field(default_factory=dict)
    time: float = 0.0  # set when recorded

    def body(self) -> dict[str, Any]:
        """What the chain hashes: every field of the event (BODY_FIELDS)."""
        return {name: dict(self.details) if name == "details" else getattr(self, name) for name in BODY_FIELDS}


# An event's fields as stored and hashed (`link`), in the order a stored record shows them.
BODY_FIELDS = ("time", "type", "outcome", "subject", "client_id", "grant_id", "client_addr", "request_id", "details")


def link(prev: str, body: Mapping[str, Any]) -> str:
    """The hash of an event: over the previous event's hash and this event's canonical JSON."""
    canonical = orjson.dumps(body, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(prev.encode("ascii") + b"\n" + canonical).hexdigest()


class AuditTrail:
    def __init__(
        self,
        store: Store,
        *,
        retention_seconds: float,
        sink: Sink | None = None,
        chain: str = CHAIN,
        clock: Callable[[], float] = time.time,
        keep: bool = True,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self.keep = keep  # False: [audit] is off, and events are only counted (for the metrics)
        self.count = count  # told every event's type and outcome, sampled ones included (the metrics)
        self.store = store
        self.retention_seconds = retention_seconds
        self.sink = sink
        self.chain = chain
        self.clock = clock
        self._waiting: deque[AuditEvent] = deque()
        self._dropped = 0
        self._sampled: dict[str, tuple[float, int]] = {}  # event type -> (when the next may be stored, left out)
        self._writer: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()

    def record(self, event: AuditEvent) -> None:
        """Queue `event` (stamped now) to be appended; never waits, never raises."""
        if self.count is not None:
            self.count(event.type, event.outcome)
        if self.keep:
            self._keep(event)

    def _keep(self, event: AuditEvent) -> None:
        if len(self._waiting) >= MAX_WAITING:
            self._waiting.popleft()
            self._dropped += 1
        address, request_id, subject, client_id = _request_parts(_REQUEST.get())
        self._waiting.append(
            replace(
                event,
                time=self.clock(),
                client_addr=event.client_addr or address,
                request_id=event.request_id or request_id,
                subject=event.subject or subject,
                client_id=event.client_id or client_id,
            )
        )
        self._idle.clear()
        if self._writer is None or self._writer.done():
            with contextlib.suppress(RuntimeError):  # no running loop (a test outside one): kept for later
                self._writer = self._start_writer()

    def record_sampled(self, event: AuditEvent) -> None:
        """Record `event` unless one of its type was recorded less than SAMPLE_SECONDS ago; those left out are
        counted, and the next one recorded says how many (`details.unrecorded`): a flood of forged tokens cannot
        flood the store."""
        if self.count is not None:
            self.count(event.type, event.outcome)
        if not self.keep:
            return
        now = self.clock()
        due, unrecorded = self._sampled.get(event.type, (0.0, 0))
        if now < due:
            self._sampled[event.type] = (due, unrecorded + 1)
            return
        self._sampled[event.type] = (now + SAMPLE_SECONDS, 0)
        self._keep(replace(event, details={**event.details, "unrecorded": unrecorded}))

    def _start_writer(self) -> asyncio.Task[None]:
        # In a context of its own: the writer outlives the request that woke it, and is no part of it (its trace).
        loop = asyncio.get_running_loop()
        return loop.create_task(self._write(), name="bastion-audit", context=contextvars.Context())

    async def flush(self) -> None:
        """Wait until every event recorded so far is appended (or the writer gave up for now)."""
        if self._waiting and (self._writer is None or self._writer.done()):
            self._writer = self._start_writer()
        await self._idle.wait()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.flush(), RETRY_SECONDS * 3)
        if self._writer is not None:
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._writer

    async def _write(self) -> None:
        try:
            while self._waiting:
                if self._dropped:
                    log.warning("%d audit events were dropped while the store could not take them", self._dropped)
                    self._dropped = 0
                batch = [self._waiting[i] for i in range(min(BATCH, len(self._waiting)))]
                try:
                    stored = await self._append(batch)
                except StoreUnavailable as exc:
                    sampled.warning("audit events wait in memory: the store cannot take them (%s)", exc)
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                if stored is None:  # lost every race: others append fast, or the tip and its revision disagree
                    sampled.warning("audit events wait: the chain could not be appended to (bastion audit verify)")
                    await asyncio.sleep(RETRY_SECONDS)
                    continue
                for _ in batch:
                    self._waiting.popleft()
                if self.sink is not None:
                    await asyncio.to_thread(self._send, stored)  # a file's write is blocking work
        finally:
            if not self._waiting:
                self._idle.set()

    async def _append(self, batch: list[AuditEvent]) -> list[dict[str, Any]] | None:
        """Append `batch` after the current tip: the records stored, or None if other writers kept winning."""
        for _ in range(APPEND_ATTEMPTS):
            tip = await self.store.get(keys.audit_tip(self.chain))
            length, prev = (tip["seq"], tip["hash"]) if tip else (0, GENESIS)
            change = Commit()
            if tip is not None:
                change.consume.append(keys.audit_revision(self.chain, length))
            records = []
            for offset, event in enumerate(batch, start=1):
                body = event.body()
                record = {"seq": length + offset, **body, "prev": prev, "hash": link(prev, body)}
                prev = record["hash"]
                records.append(record)
                change.set(keys.audit_event(self.chain, record["seq"]), record, self.retention_seconds)
            end = length + len(batch)
            if tip is None:  # the first append ever: of several writers, exactly one creates the tip
                change.add(keys.audit_tip(self.chain), {"seq": end, "hash": prev})
            else:
                change.set(keys.audit_tip(self.chain), {"seq": end, "hash": prev})
            change.add(keys.audit_revision(self.chain, end), {})
            if await self.store.commit(change):
                return records
        return None

    def _send(self, records: list[dict[str, Any]]) -> None:
        assert self.sink is not None
        try:
            self.sink(b"".join(orjson.dumps(record) + b"\n" for record in records))
        except Exception as exc:  # the store has them: a sink that fails loses its copy, not the events
            sampled.warning("audit sink failed: %s", type(exc).__name__)


@dataclass(frozen=True)
class Verdict:
    whole: bool
    events: int
    first: int | None
    last: int | None
    broken_at: int | None = None
    reason: str = ""


async def verify(store: Store, chain: str = CHAIN) -> Verdict:
    """Walk the chain from its oldest kept event to the tip; the first broken link, if any."""
    names = await store.keys(keys.audit_events(chain))
    tip = await store.get(keys.audit_tip(chain))
    prev: str | None = None
    expected: int | None = None
    first: int | None = None
    count = 0
    for name in names:
        record = await store.get(name)
        if record is None:
            continue  # expired between listing and reading
        seq = record.get("seq")
        if not isinstance(seq, int) or name != keys.audit_event(chain, seq):
            return Verdict(False, count, first, expected, _seq_of(name), "the event's number does not match its key")
        if expected is not None and seq != expected:
            return Verdict(False, count, first, expected - 1, expected, f"event {expected} is missing")
        body = {k: record.get(k) for k in BODY_FIELDS}
        if prev is not None and record.get("prev") != prev:
            return Verdict(False, count, first, seq - 1, seq, "its `prev` is not the previous event's hash")
        if not isinstance(record.get("prev"), str) or record.get("hash") != link(record["prev"], body):
            return Verdict(False, count, first, seq - 1, seq, "its hash does not match its content")
        first = seq if first is None else first
        prev, expected, count = record["hash"], seq + 1, count + 1
    last = expected - 1 if expected is not None else None
    if tip is None:
        if count:
            return Verdict(False, count, first, last, None, "events exist but the chain's tip is missing")
        return Verdict(True, 0, None, None)
    if tip.get("seq") != last or tip.get("hash") != prev:
        if count == 0 and isinstance(tip.get("seq"), int):
            return Verdict(True, 0, None, None, reason="every event has expired (retention)")
        return Verdict(False, count, first, last, last + 1 if last is not None else None, "the tip names another event")
    return Verdict(True, count, first, last)


@dataclass(frozen=True)
class Search:
    """Which stored events to find: every field given must match (type by prefix: "token." finds them all)."""

    type: str | None = None
    subject: str | None = None
    client_id: str | None = None
    grant_id: str | None = None
    since: float | None = None
    until: float | None = None

    def matches(self, event: Mapping[str, Any]) -> bool:
        when = event.get("time") or 0
        return (
            (self.type is None or str(event.get("type", "")).startswith(self.type))
            and (self.subject is None or event.get("subject") == self.subject)
            and (self.client_id is None or event.get("client_id") == self.client_id)
            and (self.grant_id is None or event.get("grant_id") == self.grant_id)
            and (self.since is None or when >= self.since)
            and (self.until is None or when < self.until)
        )


async def recent(store: Store, count: int, search: Search | None = None, chain: str = CHAIN) -> list[dict[str, Any]]:
    """The newest `count` stored events that match `search` (all, without one), oldest first: `bastion audit
    tail|search`, the admin page and API. Read newest first, a page of events at a time, until enough match."""
    if count <= 0:
        return []
    names = await store.keys(keys.audit_events(chain))
    found: list[dict[str, Any]] = []
    end = len(names)
    while end > 0 and len(found) < count:
        start = max(0, end - (count if search is None else SEARCH_PAGE))
        page = [record for record in await store.get_many(names[start:end]) if record is not None]
        found.extend(record for record in reversed(page) if search is None or search.matches(record))
        end = start
    return list(reversed(found[:count]))


def _seq_of(name: str) -> int | None:
    tail = name.rpartition(keys.SEPARATOR)[2]
    return int(tail) if tail.isdigit() else None


def trail_for(
    configured: AuditSettings, store: Store, count: Callable[[str, str], None] | None = None
) -> AuditTrail | None:
    """The trail [audit] describes, on `store`, telling `count` of every event; None when it is turned off and
    nothing counts (with [audit] off, a trail that counts and keeps nothing)."""
    if not configured.enabled and count is None:
        return None
    return AuditTrail(
        store,
        retention_seconds=configured.retention_days * 86400,
        sink=sink_for(configured.sink) if configured.enabled else None,
        keep=configured.enabled,
        count=count,
    )


def sink_for(where: str | None) -> Sink | None:
    """The sink `audit.sink` names: "stdout", a file appended to (created owner-only), or none."""
    if not where:
        return None
    if where == "stdout":

        def to_stdout(lines: bytes) -> None:
            sys.stdout.buffer.write(lines)
            sys.stdout.buffer.flush()

        return to_stdout
    path = Path(where)

    def to_file(lines: bytes) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, lines)
        finally:
            os.close(fd)

    return to_file
