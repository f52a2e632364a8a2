"""`bastion admin clients|grants|connections ...`: see and act on the configured store, as `bastion serve` would
open it.

Revocations go through the store's bus, so running servers drop what they remembered of the tokens at once;
every action is an audit event naming the operating-system user who ran the command."""

from __future__ import annotations

import argparse
import getpass
import time
from typing import Any

import orjson

from .command import Command
from .on_store import run_on_store
from .refuse import load_settings, refuse

# Ids Bastion draws never start with '-', but a CIMD client's or an older server's might.
_DASH = "an id starting with '-' goes after --, e.g. `delete -- -x1`"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="settings file (default ./bastion.toml if present)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    kinds = parser.add_subparsers(dest="kind", required=True)
    clients = kinds.add_parser("clients", help="registered clients").add_subparsers(dest="action", required=True)
    clients.add_parser("list", help="every registered client")
    clients.add_parser("show", help="one client").add_argument("client_id", help=_DASH)
    clients.add_parser("revoke", help="revoke every grant of a client; it stays registered").add_argument(
        "client_id", help=_DASH
    )
    clients.add_parser("delete", help="revoke every grant of a client, then delete it").add_argument(
        "client_id", help=_DASH
    )
    grants = kinds.add_parser("grants", help="users' grants to clients").add_subparsers(dest="action", required=True)
    listing = grants.add_parser("list", help="grants, all or by user or client")
    listing.add_argument("--user", help="only this subject's (e.g. dev:ada, github:12345)")
    listing.add_argument("--client", help="only this client's")
    grants.add_parser("show", help="one grant").add_argument("grant_id", help=_DASH)
    grants.add_parser("revoke", help="end a grant and every token it issued, everywhere").add_argument(
        "grant_id", help=_DASH
    )
    connections = kinds.add_parser("connections", help="users' connected accounts ([[connections]])")
    actions = connections.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="connected accounts, all or one user's").add_argument(
        "--user", help="only this subject's (e.g. dev:ada)"
    )
    disconnect = actions.add_parser("disconnect", help="forget a user's account, revoking it at the provider")
    disconnect.add_argument("subject", help="the user (e.g. dev:ada)")
    disconnect.add_argument("connection", help="the [[connections]] name (e.g. slack)")


def run(args: argparse.Namespace) -> None:
    settings = load_settings(args.config)
    run_on_store(settings, lambda store: _run(settings, store, args))


async def _run(settings: Any, store: Any, args: argparse.Namespace) -> int:
    from ..admin.operations import Administration
    from ..oauth.grants import Grants
    from ..ops.audit import trail_for
    from ..store import open_bus

    configured = settings.store
    path = configured.path if configured.backend == "sqlite" else None
    bus = open_bus(configured.backend, path=path, url=configured.connection_url(), cluster=configured.cluster)
    await store.start()
    await bus.start()
    trail = trail_for(settings.audit, store)
    admin = Administration(store, Grants(store, bus=bus), trail.record if trail else None, _connected(settings, store))
    by = f"cli:{getpass.getuser()}"
    try:
        return await _act(admin, args, by)
    finally:
        if trail is not None:
            await trail.close()
        await bus.close()
        await store.close()


def _connected(settings: Any, store: Any) -> Any:
    """The users' connected accounts, when the settings declare connections (revoked at their providers)."""
    if not settings.connections:
        return None
    from ..connections.accounts import ConnectedAccounts, accounts_key
    from ..connections.provider import ConnectionProvider

    if settings.state_key is None:
        refuse("[[connections]] needs state_secret (BASTION_STATE_SECRET), the one the servers use")
    providers = {entry.name: ConnectionProvider(entry) for entry in settings.connections}
    return ConnectedAccounts(store, providers, accounts_key(settings.state_key))


async def _act(admin: Any, args: argparse.Namespace, by: str) -> int:
    if args.kind == "connections":
        return await _connections(admin, args, by)
    if args.kind == "clients":
        if args.action == "list":
            return _show(await admin.clients(), args.json, ("client_id", "client_name", "confidential", "expires_at"))
        found = await admin.client(args.client_id)
        if found is None:
            refuse(f"no client {args.client_id!r}: `bastion admin clients list` shows them")
        if args.action == "show":
            return _show([found], args.json, tuple(found))
        if args.action == "revoke":
            ended = await admin.revoke_client(args.client_id, by)
            print(f"client {args.client_id}: {ended} grant(s) revoked; it stays registered")
            return 0
        ended = await admin.delete_client(args.client_id, by)
        print(f"client {args.client_id} deleted; {ended} grant(s) revoked")
        return 0
    if args.action == "list":
        listed = await admin.grant_list(subject=args.user, client_id=args.client)
        return _show(listed, args.json, ("grant_id", "subject", "client_id", "scopes", "created_at"))
    found = await admin.grant(args.grant_id)
    if found is None:
        refuse(f"no grant {args.grant_id!r}: `bastion admin grants list` shows them")
    if args.action == "show":
        return _show([found], args.json, tuple(found))
    await admin.revoke_grant(args.grant_id, by)
    print(f"grant {args.grant_id} revoked, with every token it issued")
    return 0


async def _connections(admin: Any, args: argparse.Namespace, by: str) -> int:
    if admin.connected is None:
        refuse("no [[connections]] in the settings: there are no connected accounts to see")
    if args.action == "list":
        listed = await admin.connected_accounts(args.user)
        return _show(listed, args.json, ("subject", "connection", "account", "scopes", "connected_at"))
    revoked = await admin.disconnect(args.subject, args.connection, by)
    if revoked is None:
        refuse(f"{args.subject} has no {args.connection!r} account: `bastion admin connections list` shows them")
    where = "revoked at the provider" if revoked else "forgotten (the provider did not confirm a revocation)"
    print(f"{args.subject}'s {args.connection} account disconnected: {where}")
    return 0


def _show(rows: list[dict[str, Any]], as_json: bool, columns: tuple[str, ...]) -> int:
    if as_json:
        for row in rows:
            print(orjson.dumps(row).decode())
        return 0
    if not rows:
        print("(none)")
        return 0
    cells = [[_cell(name, row.get(name)) for name in columns] for row in rows]
    widths = [max(len(name), *(len(line[i]) for line in cells)) for i, name in enumerate(columns)]
    print("  ".join(name.ljust(w) for name, w in zip(columns, widths, strict=True)).rstrip())
    for line in cells:
        print("  ".join(value.ljust(w) for value, w in zip(line, widths, strict=True)).rstrip())
    return 0


def _cell(name: str, value: Any) -> str:
    if value is None:
        return "-"
    if name.endswith(("_at",)) and isinstance(value, int | float):
        return time.strftime("%Y-%m-%d %H:%M", time.gmtime(value))
    if isinstance(value, list):
        return " ".join(str(v) for v in value) or "-"
    return str(value)


COMMAND = Command(
    "admin", "see and act on clients, grants and connected accounts in the configured store", configure, run
)
