"""`bastion install CLIENT FILE|URL`: add a server to an AI client's own configuration file, as each documents it.

  claude-desktop   claude_desktop_config.json (per user)       mcpServers.<name>: command and args (stdio)
  claude-code      .mcp.json (this project; --user: ~/.claude.json) mcpServers.<name>: stdio, or type http + url
  cursor           .cursor/mcp.json (this project; --user: ~/.cursor/mcp.json) mcpServers.<name>: stdio, or url
  vscode           .vscode/mcp.json (this workspace)           servers.<name>: type stdio, or type http + url

A server file is started by the client over stdio with this Python (`python -m bastion.cli serve FILE --stdio`);
a URL is reached over Streamable HTTP (Claude Desktop takes those in its Connectors settings, not its file).

The file is merged, never clobbered: every other entry and setting stays as it was; an entry of the same name
that differs is replaced only with --force; a file that is not valid JSON is left alone, with a one-line refusal.
The new file is written beside the old and renamed over it, so a crash leaves one or the other whole.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import orjson

from .command import Command
from .peer import is_url
from .refuse import refuse

CLIENTS = ("claude-desktop", "claude-code", "cursor", "vscode")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("client", choices=CLIENTS, help="the AI client whose configuration to change")
    parser.add_argument("target", help="server.py (started by the client over stdio) or http(s)://host/mcp")
    parser.add_argument("--name", help="the entry's name (default: the App's name, or the URL's host)")
    parser.add_argument("--user", action="store_true", help="claude-code, cursor: the user's file, not the project's")
    parser.add_argument("--file", help="the configuration file to change (default: where the client keeps it)")
    parser.add_argument("--force", action="store_true", help="replace an entry of the same name that differs")
    parser.add_argument("--env", action="append", default=[], help="stdio: NAME=value for the server's environment")


def run(args: argparse.Namespace) -> None:
    url = is_url(args.target)
    if url and args.client == "claude-desktop":
        refuse(
            "Claude Desktop adds servers at a URL in Settings > Connectors, not in its configuration file: add "
            f"{args.target} there"
        )
    name = args.name or (_host(args.target) if url else _app_name(args.target))
    entry = _url_entry(args.client, args.target) if url else _stdio_entry(args.client, args.target, _env(args.env))
    path = Path(args.file) if args.file else config_path(args.client, args.user)
    key = "servers" if args.client == "vscode" else "mcpServers"
    config = _read(path)
    servers = config.setdefault(key, {})
    if not isinstance(servers, dict):
        refuse(f"{path}: {key} is not an object; fix it by hand (the file was not changed)")
    if name in servers and servers[name] != entry and not args.force:
        refuse(f"{path} already has a different {key}.{name}: pass --force to replace it, or --name to add another")
    servers[name] = entry
    _write(path, config)
    print(f"{args.client}: {key}.{name} in {path}")


def config_path(client: str, user: bool) -> Path:
    home = Path.home()
    if client == "claude-desktop":
        if sys.platform == "darwin":
            return home / "Library" / "Application Support" / "Claude" / "claude_desktop_config.json"
        if sys.platform == "win32":
            return Path(os.environ.get("APPDATA", home)) / "Claude" / "claude_desktop_config.json"
        return Path(os.environ.get("XDG_CONFIG_HOME", home / ".config")) / "Claude" / "claude_desktop_config.json"
    if client == "claude-code":
        return home / ".claude.json" if user else Path(".mcp.json")
    if client == "cursor":
        return (home if user else Path(".")) / ".cursor" / "mcp.json"
    return Path(".vscode") / "mcp.json"


def _stdio_entry(client: str, target: str, env: dict[str, str]) -> dict[str, Any]:
    location, colon, attr = target.partition(":")
    path = Path(location)
    if not path.is_file():
        refuse(f"no such file: {location} (a server file, or a URL starting with http:// or https://)")
    served = str(path.resolve()) + (colon + attr if colon else "")
    entry: dict[str, Any] = {"command": sys.executable, "args": ["-m", "bastion.cli", "serve", served, "--stdio"]}
    if client in ("claude-code", "vscode"):
        entry = {"type": "stdio", **entry}
    if env:
        entry["env"] = env
    return entry


def _url_entry(client: str, url: str) -> dict[str, Any]:
    if client == "cursor":
        return {"url": url}
    return {"type": "http", "url": url}


def _env(given: list[str]) -> dict[str, str]:
    env = {}
    for item in given:
        name, equals, value = item.partition("=")
        if not equals or not name:
            refuse(f"--env {item!r}: write it as NAME=value")
        env[name] = value
    return env


def _app_name(target: str) -> str:
    from .target import load_app

    return entry_name(str(load_app(target).name))


def entry_name(name: str) -> str:
    """A name fit for a client's configuration entry: letters, digits, '-' and '_'."""
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name) or "bastion"


def _host(url: str) -> str:
    from urllib.parse import urlsplit

    return urlsplit(url).hostname or "bastion"


def _read(path: Path) -> dict[str, Any]:
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        refuse(f"cannot read {path}: {exc.strerror}")
    if not text.strip():
        return {}
    try:
        config = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        refuse(f"{path} is not valid JSON ({exc}); fix it by hand (the file was not changed)")
    if not isinstance(config, dict):
        refuse(f"{path} does not hold a JSON object; fix it by hand (the file was not changed)")
    return config


def _write(path: Path, config: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o600
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(orjson.dumps(config, option=orjson.OPT_INDENT_2) + b"\n")
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


COMMAND = Command("install", "add a server to Claude Desktop, Claude Code, Cursor or VS Code", configure, run)
