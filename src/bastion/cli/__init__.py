"""The `bastion` command: one module per command group (serve.py, dev.py, inspect.py, call.py, install.py,
worker_token.py, audit.py, admin.py), each giving its name, options and runner; target.py finds the user's App;
peer.py the server a developer command talks to (a file in process, or a URL); reload.py serves again on changes;
refuse.py is how every command stops on a problem the user can fix; on_store.py how a command works on the
configured store."""

from __future__ import annotations

import argparse
import sys

from . import admin, audit, call, dev, inspect, install, serve, worker_token
from .target import load_app

__all__ = ["load_app", "main", "parser"]

COMMANDS = (
    serve.COMMAND,
    dev.COMMAND,
    inspect.COMMAND,
    call.COMMAND,
    install.COMMAND,
    worker_token.COMMAND,
    audit.COMMAND,
    admin.COMMAND,
)


def parser() -> argparse.ArgumentParser:
    """The `bastion` command's parser, every command group in it."""
    found = argparse.ArgumentParser(prog="bastion", description="Secure hosting for MCP servers.")
    commands = found.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.configure(commands.add_parser(command.name, help=command.help))
    return found


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    args.argv = list(argv if argv is not None else sys.argv[1:])  # as given (serve --reload runs it again)
    run = next(command.run for command in COMMANDS if command.name == args.command)
    try:
        run(args)
    except KeyboardInterrupt:  # Ctrl-C (or --reload stopping a server to start it again): a stop, not a crash
        sys.exit(130)
