"""A service process of the tests' own for the length of a `with` block: started on entry, stopped and its folder
removed on the way out, also after a failure."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Protocol, TypeVar


class Service(Protocol):
    def start(self) -> None: ...

    def remove(self) -> None: ...


S = TypeVar("S", bound=Service)


@contextlib.contextmanager
def running(service: S) -> Iterator[S]:
    try:
        service.start()
        yield service
    finally:
        service.remove()
