"""Who may see and use what: the scopes each tool, resource and prompt needs.

A function's own `scopes=[...]` and every matching pattern from settings (`[policy] tools = {"delete_*" =
["notes:admin"]}`, fnmatch-style globs on tool and prompt names and resource URIs) add up. A caller sees in
lists only what it may use, and a call without every needed scope is refused so that the client can step up.
Without authentication there is no caller to check, and everything is open (loopback only).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase
from typing import Any

from .errors import FORBIDDEN, McpError

# Response header naming the needed scopes; the authentication layer replaces it with WWW-Authenticate.
NEEDED_SCOPES = b"x-bastion-needed-scopes"


class InsufficientScope(McpError):
    """Raised when the caller lacks scopes; `needed` is every scope the operation requires."""

    def __init__(self, what: str, needed: Iterable[str]) -> None:
        self.needed = tuple(sorted(set(needed)))
        super().__init__(
            FORBIDDEN,
            f"Forbidden: {what} needs scope(s) {' '.join(self.needed)}",
            {"scopes": list(self.needed)},
        )


class Policy:
    def __init__(
        self,
        tools: Mapping[str, Iterable[str]] | None = None,
        resources: Mapping[str, Iterable[str]] | None = None,
        prompts: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        self.patterns = {
            "tool": {k: tuple(v) for k, v in (tools or {}).items()},
            "resource": {k: tuple(v) for k, v in (resources or {}).items()},
            "prompt": {k: tuple(v) for k, v in (prompts or {}).items()},
        }
        self._answers: dict[tuple[str, str, tuple[str, ...]], frozenset[str]] = {}

    def needed(self, kind: str, name: str, own: Iterable[str] = ()) -> frozenset[str]:
        key = (kind, name, tuple(own))
        answer = self._answers.get(key)
        if answer is None:  # the same few questions on every call: remember the answers
            scopes = set(own)
            for pattern, extra in self.patterns[kind].items():
                if fnmatchcase(name, pattern):
                    scopes.update(extra)
            answer = self._answers[key] = frozenset(scopes)
            if len(self._answers) > 10_000:
                self._answers.clear()
        return answer

    def every_scope(self) -> set[str]:
        return {scope for patterns in self.patterns.values() for scopes in patterns.values() for scope in scopes}


def allows(principal: Any, needed: frozenset[str]) -> bool:
    if principal is None or not needed:
        return True
    return needed <= set(getattr(principal, "scopes", ()))
