"""`bastion serve`: serve an App over Streamable HTTP, or stdio (the serving itself is bastion/serve.py)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from .command import Command
from .refuse import load_settings, refuse
from .target import load_app


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="server.py, server.py:app or package.module:app")
    parser.add_argument("--host", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8000)")
    parser.add_argument("--config", help="settings file (default ./bastion.toml if present)")
    parser.add_argument("--stdio", action="store_true", help="serve stdio instead of HTTP")
    parser.add_argument(
        "--workers",
        type=_workers,
        help="HTTP worker processes on this machine (default: the workers setting, 1); more than one needs a store "
        "they share",
    )
    parser.add_argument("--debug", action="store_true", help="show the traceback of a problem at start-up")
    parser.add_argument(
        "--reload",
        action="store_true",
        help="serve again whenever a .py or .toml file under the server's folder changes",
    )
    parser.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,  # absent (not False), so the settings file and environment decide
        help="allow serving without authentication beyond loopback (never in production)",
    )


def run(args: argparse.Namespace) -> None:
    from ..serve import serve_http, serve_stdio

    if args.stdio and args.workers is not None and args.workers > 1:
        refuse("--workers is for HTTP: a stdio server has one client, its parent process")
    if args.reload:
        if args.stdio or (args.workers is not None and args.workers > 1):
            refuse("--reload serves one HTTP process: drop --stdio and --workers (a stdio client restarts its server)")
        from .reload import serve_reloading

        sys.exit(serve_reloading(_without_reload(args.argv), _folder(args.target)))
    settings = load_settings(
        args.config,
        host=args.host,
        port=args.port,
        insecure_no_auth=args.insecure_no_auth,
        workers=None if args.stdio else args.workers,
    )
    app = load_app(args.target, args.debug)
    if args.stdio:
        serve_stdio(app, settings)
    else:
        serve_http(app, settings, load_app=partial(load_app, args.target, args.debug))


def _without_reload(argv: list[str]) -> list[str]:
    """This command's own arguments (after `serve`), for the child that serves, less --reload."""
    given = argv[argv.index("serve") + 1 :]
    return [argument for argument in given if argument != "--reload"]


def _folder(target: str) -> Path:
    location = target.partition(":")[0]
    path = Path(location)
    return path.resolve().parent if path.suffix == ".py" or path.is_file() else Path.cwd()


def _workers(value: str) -> int:
    try:
        count = int(value)
    except ValueError:
        count = 0
    if not 1 <= count <= 256:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of processes from 1 to 256")
    return count


COMMAND = Command("serve", "serve an App over Streamable HTTP (or stdio with --stdio)", configure=configure, run=run)
