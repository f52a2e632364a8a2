"""How a command stops on a problem the user can fix: one `bastion: ...` line on stderr, exit status 2."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, NoReturn

from ..settings import Settings, SettingsError


def refuse(message: str) -> NoReturn:
    print(f"bastion: {message}", file=sys.stderr)
    raise SystemExit(2)


def load_settings(config: str | Path | None, **overrides: Any) -> Settings:
    """Settings.load, with its SettingsError (which says what to change) as the refusal instead of a traceback."""
    try:
        return Settings.load(config, **overrides)
    except SettingsError as exc:
        problem = str(exc)
    refuse(problem)
