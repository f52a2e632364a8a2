"""`bastion worker-token`: print a short-lived worker token, refusing exactly the secrets `serve` refuses."""

from __future__ import annotations

import argparse

from .command import Command
from .refuse import load_settings, refuse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="settings file (default ./bastion.toml if present)")
    parser.add_argument("--seconds", type=int, default=300, help="lifetime (default 300)")


def run(args: argparse.Namespace) -> None:
    from ..worker.auth import mint

    settings = load_settings(args.config)
    if not settings.worker.secret_env:
        refuse("set [worker] secret_env, and the variable it names, to mint worker tokens")
    # Exactly what `serve` refuses: a token signed with a guessable secret is no proof of anything.
    if problem := settings.worker.secret_problem():
        refuse(problem)
    secret = settings.worker.secret() or ""
    if args.seconds > settings.worker.max_token_seconds:
        refuse(f"--seconds is above worker.max_token_seconds ({settings.worker.max_token_seconds})")
    print(mint(secret, args.seconds))


COMMAND = Command("worker-token", "print a short-lived worker token (for testing)", configure=configure, run=run)
