"""The `bastion` command."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any

from .settings import Settings, SettingsError


def load_app(target: str) -> Any:
    """The App in a file (`server.py`, optionally `server.py:app`) or a module (`pkg.mod:app`)."""
    from .app import App

    location, _, attr = target.partition(":")
    if location.endswith(".py") or Path(location).is_file():
        path = Path(location).resolve()
        if not path.is_file():
            raise SystemExit(f"bastion: no such file: {location}")
        sys.path.insert(0, str(path.parent))
        spec = importlib.util.spec_from_file_location(path.stem, path)
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[path.stem] = module
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(location)
    if attr:
        app = getattr(module, attr, None)
    else:
        apps = [v for v in vars(module).values() if isinstance(v, App)]
        app = getattr(module, "app", None) if len(apps) != 1 else apps[0]
    if not isinstance(app, App):
        raise SystemExit(f"bastion: {target} defines no bastion App (name it `app` or pass file.py:name)")
    return app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="bastion", description="Secure hosting for MCP servers.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve an App over Streamable HTTP (or stdio with --stdio)")
    serve.add_argument("target", help="server.py, server.py:app or package.module:app")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8000)")
    serve.add_argument("--config", help="settings file (default ./bastion.toml if present)")
    serve.add_argument("--stdio", action="store_true", help="serve stdio instead of HTTP")
    serve.add_argument(
        "--insecure-no-auth",
        action="store_true",
        default=None,
        help="allow serving without authentication beyond loopback (never in production)",
    )
    token = commands.add_parser("worker-token", help="print a short-lived worker token (for testing)")
    token.add_argument("--config", help="settings file (default ./bastion.toml if present)")
    token.add_argument("--seconds", type=int, default=300, help="lifetime (default 300)")
    args = parser.parse_args(argv)

    if args.command == "worker-token":
        from .worker.auth import mint

        try:
            settings = Settings.load(args.config)
        except SettingsError as exc:
            print(f"bastion: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        if not settings.worker.secret_env:
            print("bastion: set [worker] secret_env, and the variable it names, to mint worker tokens", file=sys.stderr)
            raise SystemExit(2)
        # Exactly what `serve` refuses: a token signed with a guessable secret is no proof of anything.
        if problem := settings.worker.secret_problem():
            print(f"bastion: {problem}", file=sys.stderr)
            raise SystemExit(2)
        secret = settings.worker.secret() or ""
        if args.seconds > settings.worker.max_token_seconds:
            print(
                f"bastion: --seconds is above worker.max_token_seconds ({settings.worker.max_token_seconds})",
                file=sys.stderr,
            )
            raise SystemExit(2)
        print(mint(secret, args.seconds))
        return

    if args.command == "serve":
        from .serve import serve_http, serve_stdio

        try:
            settings = Settings.load(
                args.config, host=args.host, port=args.port, insecure_no_auth=args.insecure_no_auth
            )
        except SettingsError as exc:
            print(f"bastion: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        app = load_app(args.target)
        if args.stdio:
            serve_stdio(app, settings)
        else:
            serve_http(app, settings)


if __name__ == "__main__":
    main()
