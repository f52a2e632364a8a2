"""Where secrets named by the settings come from: an environment variable or a file, never the settings file."""

from __future__ import annotations

import os
from pathlib import Path


def read_secret(env: str | None, file: str | None) -> str | None:
    """A secret from the named environment variable, else from the named file (trimmed), else None."""
    if env:
        return os.environ.get(env)
    if file:
        return Path(file).read_text().strip()
    return None


def secret_problem(owner: str, env: str | None, file: str | None, field: str = "client_secret") -> str | None:
    """Why the secret `owner` names (by environment variable or file: the settings `<field>_env`, `<field>_file`)
    cannot be read, in one line saying what to do; None when it can. Neither named is a problem too."""
    if env:
        if os.environ.get(env):
            return None
        return f"{owner}: the environment variable {env} ({field}_env) is not set, or empty: set it"
    if file:
        try:
            text = Path(file).read_text().strip()
        except OSError as exc:
            return f"{owner}: cannot read {field}_file {file!r} ({exc.strerror}): create it, or fix the path"
        return None if text else f"{owner}: {field}_file {file!r} is empty: put the secret in it"
    return (
        f"{owner} has no {field.replace('_', ' ')}: set {field}_env to the name of an environment variable that "
        f"holds it, or {field}_file"
    )
