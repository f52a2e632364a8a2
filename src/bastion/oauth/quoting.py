"""Repeating request input in an error description, bounded.

A description goes back in a redirect's Location header or a JSON body. What it repeats from the request is cut
to a few short values, in the characters RFC 6749 allows there (%x20-21 / %x23-5B / %x5D-7E), so that a request
full of junk cannot grow the answer, or smuggle quotes and backslashes into it.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_VALUES = 3
MAX_CHARS = 40


def _allowed(char: str) -> bool:
    return 0x20 <= ord(char) <= 0x7E and char not in '"\\'


def quote(value: str, limit: int = MAX_CHARS) -> str:
    """`value`, at most `limit` characters of it, with anything a description may not hold shown as '?'."""
    shown = "".join(c if _allowed(c) else "?" for c in value[:limit])
    return shown + "..." if len(value) > limit else shown


def some(values: Sequence[str]) -> str:
    """The first few values, quoted, and how many more there were."""
    shown = " ".join(quote(value) for value in values[:MAX_VALUES])
    rest = len(values) - MAX_VALUES
    return f"{shown} (and {rest} more)" if rest > 0 else shown
