"""Tool secrets: read from the environment or an env file, and handed only to the tools that declare them."""

from __future__ import annotations

import os
from pathlib import Path

from dotenv import dotenv_values


class SecretSource:
    def __init__(self, env_file: str | None = ".env") -> None:
        self._file: dict[str, str] = {}
        if env_file and Path(env_file).is_file():
            self._file = {k: v for k, v in dotenv_values(env_file).items() if v is not None}

    def __call__(self, names: tuple[str, ...]) -> dict[str, str]:
        found: dict[str, str] = {}
        for name in names:
            value = os.environ.get(name, self._file.get(name))
            if value:
                found[name] = value
        return found
