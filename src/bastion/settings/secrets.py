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
