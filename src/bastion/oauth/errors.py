"""OAuth errors (RFC 6749 section 5.2 and friends), answered as JSON with the status each one calls for."""

from __future__ import annotations

from typing import Any

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    def __init__(self, error: str, description: str, status: int = 400, headers: dict[str, str] | None = None):
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        return {"error": self.error, "error_description": self.description}


def invalid_request(description: str) -> OAuthError:
    return OAuthError("invalid_request", description)


def invalid_grant(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


def invalid_client(description: str, basic: bool = False) -> OAuthError:
    # A client that tried HTTP Basic is told how to retry (RFC 6749 section 5.2).
    headers = {"WWW-Authenticate": 'Basic realm="bastion"'} if basic else {}
    return OAuthError("invalid_client", description, 401, headers)
