"""`bastion audit verify|tail|search`: the audit trail on the configured store (docs/operations.md)."""

from __future__ import annotations

import argparse
import sys
import time
from datetime import UTC, datetime
from typing import Any

import orjson

from .command import Command
from .on_store import run_on_store
from .refuse import load_settings, refuse

COLUMNS = ("seq", "time", "type", "outcome", "subject", "client_id", "grant_id", "client_addr", "request_id")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=("verify", "tail", "search"),
        help="verify the chain, show the newest events, or the newest that match",
    )
    parser.add_argument("--config", help="settings file (default ./bastion.toml if present)")
    parser.add_argument("-n", type=int, default=20, help="tail, search: how many events at most (default 20)")
    parser.add_argument("--json", action="store_true", help="tail, search: one JSON object per line")
    parser.add_argument("--type", help="search: events of this type, or starting with it (token.)")
    parser.add_argument("--subject", help="search: this user's (e.g. github:12345)")
    parser.add_argument("--client", help="search: this client's")
    parser.add_argument("--grant", help="search: this grant's")
    parser.add_argument("--since", help="search: at or after this time (2026-12-01 or 2026-12-01T08:00Z)")
    parser.add_argument("--until", help="search: before this time")


def run(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)
    run_on_store(settings, lambda store: _run(store, args))


def _moment(value: str | None, option: str) -> float | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        refuse(f"{option} {value!r} is not a date or time: write 2026-12-01 or 2026-12-01T08:00Z")
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


async def _run(store: Any, args: argparse.Namespace) -> int:
    from ..ops.audit import Search, recent, verify

    await store.start()
    try:
        if args.action == "verify":
            verdict = await verify(store)
            if verdict.whole:
                span = f" (events {verdict.first} to {verdict.last})" if verdict.events else ""
                note = f"; {verdict.reason}" if verdict.reason else ""
                print(f"audit chain whole: {verdict.events} events{span}{note}")
                return 0
            print(f"audit chain BROKEN at event {verdict.broken_at}: {verdict.reason}", file=sys.stderr)
            return 1
        search = None
        if args.action == "search":
            since, until = _moment(args.since, "--since"), _moment(args.until, "--until")
            search = Search(args.type, args.subject, args.client, args.grant, since, until)
        for record in await recent(store, args.n, search):
            if args.json:
                print(orjson.dumps(record).decode())
            else:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.get("time") or 0))
                shown = [str(record.get(c) if c != "time" else when) for c in COLUMNS]
                print("  ".join(v if v != "None" else "-" for v in shown))
        return 0
    finally:
        await store.close()


COMMAND = Command("audit", "verify the audit trail's hash chain, or show or search its events", configure, run)
