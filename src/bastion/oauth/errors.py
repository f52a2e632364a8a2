"""OAuth errors (RFC 6749 section 5.2 and friends), answered as JSON with the status each one calls for."""

from __future__ import annotations

from typing import Any

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
RETRY_AFTER_SECONDS = 5  # how long a client is asked to wait when the store cannot answer


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


def temporarily_unavailable() -> OAuthError:
    # The store could not answer: not a verdict on the request, which may be sent again as it was.
    return OAuthError(
        "temporarily_unavailable",
        "the server cannot complete this request right now; try again shortly",
        503,
        {"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
