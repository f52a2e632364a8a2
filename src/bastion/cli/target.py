"""The App a command serves, named by the user as a file (`server.py`, `server.py:app`) or a module (`pkg.mod:app`)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any


def load_app(target: str) -> Any:
    """The App in a file (`server.py`, optionally `server.py:app`) or a module (`pkg.mod:app`)."""
    from ..app import App

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
