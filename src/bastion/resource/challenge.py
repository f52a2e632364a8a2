"""WWW-Authenticate challenges for the protected resource (RFC 6750 section 3, RFC 9728 section 5.1).

One object builds them for both places that answer: the bearer gate (401 no or bad token, 403 missing
required scopes) and the MCP engine (403 when a call needs scopes the token lacks, the step-up challenge).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..ops.audit import AuditEvent, AuditTrail
from ..public_url import base_url, base_url_for_host, metadata_url


class Challenges:
    def __init__(
        self,
        public_url: str | None,
        resource_path: str,
        required_scopes: tuple[str, ...] = (),
        audit: AuditTrail | None = None,
    ) -> None:
        self.public_url = public_url
        self.resource_path = resource_path
        self.required_scopes = required_scopes
        self.audit = audit  # told of every step-up refused (ops/audit.py)

    def unauthorized(self, scope: Mapping[str, Any], error: str | None, status: int = 401) -> str:
        """No token (error None), or a bad one: where to get a good one, and which scopes every caller needs."""
        root = scope.get("root_path", "")
        challenge = f'Bearer resource_metadata="{self._metadata(base_url(scope, self.public_url), root)}"'
        if self.required_scopes and status == 401:
            challenge += f', scope="{" ".join(self.required_scopes)}"'
        if error:
            challenge += f', error="{error}"'
        return challenge

    def step_up(self, host: str | None, root: str, needed: tuple[str, ...]) -> list[tuple[bytes, bytes]]:
        """Headers for a 403 answering a call that lacked scopes: every scope the call needs, once. `root`: the
        path the server is mounted at, if it is."""
        base = base_url_for_host(host, self.public_url, root)
        wanted = tuple(dict.fromkeys((*self.required_scopes, *needed)))
        if self.audit is not None:  # the caller is bound by the gate that let the request in
            self.audit.record(AuditEvent("stepup.refused", "failure", details={"needed": " ".join(wanted)}))
        # offline_access is about refresh tokens, never what a call needs: it stays out of challenges.
        scopes = " ".join(s for s in wanted if s != "offline_access")
        value = f'Bearer error="insufficient_scope", scope="{scopes}", resource_metadata="{self._metadata(base, root)}"'
        return [(b"www-authenticate", value.encode())]

    def _metadata(self, base: str, root: str) -> str:
        return metadata_url(base, self.resource_path, root)
