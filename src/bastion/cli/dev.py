"""`bastion dev FILE`: serve a server file while working on it: served again on every change, with Bastion's
authorization server and dev login on (any name, no password; loopback only), its records in a throwaway folder,
and how to connect the MCP Inspector and each AI client printed first."""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from .command import Command
from .install import entry_name
from .refuse import refuse
from .reload import serve_reloading


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="server.py or server.py:app")
    parser.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    parser.add_argument("--config", help="settings file (default ./bastion.toml if present)")
    parser.add_argument("--no-auth", action="store_true", help="serve without the authorization server")


def run(args: argparse.Namespace) -> None:
    location = args.target.partition(":")[0]
    path = Path(location)
    if not path.is_file():
        refuse(f"no such file: {location}")
    url = f"http://127.0.0.1:{args.port}/mcp"
    name = entry_name(path.stem)
    served = [args.target, "--host", "127.0.0.1", "--port", str(args.port)]
    if args.config:
        served += ["--config", args.config]
    print(guide(url, name, path, not args.no_auth), flush=True)
    with tempfile.TemporaryDirectory(prefix="bastion-dev-") as folder:
        env = {"BASTION_STORE__PATH": str(Path(folder) / "dev.db")}
        if not args.no_auth:
            env |= {"BASTION_AUTHORIZATION_SERVER__ENABLED": "true", "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true"}
        status = serve_reloading(served, path.resolve().parent, env)
    sys.exit(status)


def guide(url: str, name: str, path: Path, auth: bool) -> str:
    sign_in = (
        "sign-in: Bastion's authorization server with dev login (any name, no password); clients sign in by OAuth"
        if auth
        else "sign-in: none (--no-auth)"
    )
    return "\n".join(
        [
            f"bastion dev: {path} at {url}, served again on every change (Ctrl-C stops)",
            f"  {sign_in}",
            f"  MCP Inspector:  npx @modelcontextprotocol/inspector, transport Streamable HTTP, URL {url}",
            f"  Claude Code:    claude mcp add --transport http {name} {url}",
            f"  Cursor:         bastion install cursor {url} --name {name}",
            f"  VS Code:        bastion install vscode {url} --name {name}",
            f"  Claude Desktop: bastion install claude-desktop {path}   (stdio, started by Claude Desktop)",
            f"  one tool now:   bastion call {path} TOOL key=value",
        ]
    )


COMMAND = Command("dev", "serve a server file while you work on it: reload, dev login, how to connect", configure, run)
