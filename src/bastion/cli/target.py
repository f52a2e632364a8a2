"""The App a command serves, named by the user as a file (`server.py`, `server.py:app`) or a module (`pkg.mod:app`)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import Any

from .refuse import refuse


def load_app(target: str, debug: bool = False) -> Any:
    """The App in a file (`server.py`, optionally `server.py:app`) or a module (`pkg.mod:app`). A file that fails
    to load ends the command in one line naming the file, tool or module and the fix (the traceback too with
    `debug`)."""
    from ..app import App

    location, _, attr = target.partition(":")
    try:
        module = _load(location)
    except SystemExit:
        raise
    except BaseException as exc:
        if debug:
            traceback.print_exc()
        refuse(_loading_problem(location, exc))
    if attr:
        app = getattr(module, attr, None)
    else:
        apps = [v for v in vars(module).values() if isinstance(v, App)]
        app = getattr(module, "app", None) if len(apps) != 1 else apps[0]
    if not isinstance(app, App):
        refuse(f"{target} defines no bastion App (name it `app` or pass file.py:name)")
    return app


def _load(location: str) -> ModuleType:
    if not (location.endswith(".py") or Path(location).is_file()):
        return importlib.import_module(location)
    path = Path(location).resolve()
    if not path.is_file():
        refuse(f"no such file: {location}")
    sys.path.insert(0, str(path.parent))
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[path.stem] = module
    spec.loader.exec_module(module)
    return module


def _loading_problem(location: str, exc: BaseException) -> str:
    """One line: what went wrong loading `location`, where, and what to do."""
    from ..mcp.schema import DefinitionError

    if isinstance(exc, DefinitionError):
        return f"{location}: {exc}"
    if isinstance(exc, SyntaxError):
        return f"{exc.filename}:{exc.lineno}: {exc.msg}: fix the syntax"
    if isinstance(exc, ModuleNotFoundError):
        if exc.name == location.removesuffix(".py"):
            return f"no module named {location!r}: pass a file (server.py) or an importable module (pkg.mod:app)"
        return (
            f"{location} imports {exc.name!r}, which is not installed in this Python ({sys.executable}): install it "
            "(pip install ...) or fix the import"
        )
    where = _where(exc, location)
    return f"{location} failed to load: {type(exc).__name__}: {exc}{where} (bastion serve --debug shows the traceback)"


def _where(exc: BaseException, location: str) -> str:
    """` at file:line` of the innermost frame in the user's own file, when there is one."""
    frames = traceback.extract_tb(exc.__traceback__)
    name = Path(location).name
    mine = [frame for frame in frames if Path(frame.filename).name == name] or frames[-1:]
    return f" at {mine[-1].filename}:{mine[-1].lineno}" if mine else ""
