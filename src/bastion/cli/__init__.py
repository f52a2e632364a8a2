"""The `bastion` command: one module per command group (serve.py, inspect.py, call.py, install.py, worker_token.py,
audit.py, admin.py), each
giving its name, options and runner; target.py finds the user's App; refuse.py is how every command stops on a
problem the user can fix; on_store.py how a command works on the configured store."""

from __future__ import annotations

import argparse

from . import admin, audit, call, inspect, install, serve, worker_token
from .target import load_app

__all__ = ["load_app", "main"]

COMMANDS = (
    serve.COMMAND,
    inspect.COMMAND,
    call.COMMAND,
    install.COMMAND,
    worker_token.COMMAND,
    audit.COMMAND,
    admin.COMMAND,
)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bastion", description="Secure hosting for MCP servers.")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.configure(commands.add_parser(command.name, help=command.help))
    args = parser.parse_args(argv)
    run = next(command.run for command in COMMANDS if command.name == args.command)
    run(args)
