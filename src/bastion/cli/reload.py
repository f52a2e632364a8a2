"""Serving with `--reload`: the server runs in a child process, started again whenever a Python file, a TOML file
or .env under the watched folder changes. A change that breaks the file ends that child in its one-line refusal;
the next change starts it again. The parent only watches: Ctrl-C (or SIGTERM) stops both."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Sequence
from pathlib import Path

WATCHED_SUFFIXES = (".py", ".toml")


def _watched(_change: object, path: str) -> bool:
    name = Path(path).name
    return name.endswith(WATCHED_SUFFIXES) or name == ".env"


def serve_reloading(arguments: Sequence[str], folder: Path, env: dict[str, str] | None = None) -> int:
    """Run `bastion serve <arguments>` in a child, again after each change under `folder`; its exit status once
    stopped."""
    import os

    import watchfiles

    command = shlex.join([sys.executable, "-m", "bastion.cli", "serve", *arguments])
    if env:
        os.environ.update(env)  # the children inherit it (this process serves nothing itself)

    def changed(changes: set[tuple[watchfiles.Change, str]]) -> None:
        names = sorted({Path(path).name for _, path in changes})
        print(f"bastion: {', '.join(names[:5])} changed: serving again", file=sys.stderr, flush=True)

    return watchfiles.run_process(
        folder, target=command, target_type="command", callback=changed, watch_filter=_watched, debounce=400
    )
