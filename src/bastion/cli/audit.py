"""`bastion audit verify|tail`: the audit trail on the configured store (docs/operations.md)."""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import orjson

from .command import Command
from .on_store import run_on_store
from .refuse import load_settings

COLUMNS = ("seq", "time", "type", "outcome", "subject", "client_id", "grant_id", "client_addr", "request_id")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("verify", "tail"), help="verify the chain, or show the newest events")
    parser.add_argument("--config", help="settings file (default ./bastion.toml if present)")
    parser.add_argument("-n", type=int, default=20, help="tail: how many events (default 20)")
    parser.add_argument("--json", action="store_true", help="tail: one JSON object per line")


def run(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)
    run_on_store(settings, lambda store: _run(store, args))


async def _run(store: Any, args: argparse.Namespace) -> int:
    from ..ops.audit import recent, verify

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
        for record in await recent(store, args.n):
            if args.json:
                print(orjson.dumps(record).decode())
            else:
                when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.get("time") or 0))
                shown = [str(record.get(c) if c != "time" else when) for c in COLUMNS]
                print("  ".join(v if v != "None" else "-" for v in shown))
        return 0
    finally:
        await store.close()


COMMAND = Command("audit", "verify the audit trail's hash chain, or show its newest events", configure, run)
