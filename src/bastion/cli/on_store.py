"""How a command works on the configured store: opened as `bastion serve` would open it (the same refusals), one
line and exit status 2 when it cannot be used, the command's own exit status otherwise."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, NoReturn

from .refuse import refuse


def run_on_store(settings: Any, work: Callable[[Any], Coroutine[Any, Any, int]]) -> NoReturn:
    """Open the store `settings` name and exit with what `work(store)` returns."""
    from ..compose import configured_store
    from ..settings import SettingsError
    from ..store import StoreUnavailable

    try:
        store = configured_store(settings)
    except SettingsError as exc:
        refuse(str(exc))
    try:
        status = asyncio.run(work(store))
    except StoreUnavailable as exc:
        refuse(f"the store cannot be used ({exc}): is it running, and is [store] right?")
    raise SystemExit(status)
