"""Answers that send the browser back to the application: its code, or the error that ended the request.

Each carries the request's `state` and the issuer (`iss`, RFC 9207) so that the client can tell which request
and which server the answer belongs to.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.responses import RedirectResponse


def redirect_with(uri: str, params: dict[str, str | None]) -> RedirectResponse:
    """Redirect to `uri` with `params` added to its query (keeping any query it already has)."""
    parts = urlsplit(uri)
    extra = urlencode({k: v for k, v in params.items() if v is not None})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return RedirectResponse(urlunsplit(parts._replace(query=query)), 302, headers={"Cache-Control": "no-store"})


def error_to_client(
    redirect_uri: str, error: str, description: str, state: str | None, issuer: str
) -> RedirectResponse:
    return redirect_with(
        redirect_uri, {"error": error, "error_description": description, "state": state, "iss": issuer}
    )


def consent_required(redirect_uri: str, state: str | None, issuer: str) -> RedirectResponse:
    description = "this user has not approved this application here; ask again without prompt=none"
    return error_to_client(redirect_uri, "consent_required", description, state, issuer)


def denied(record: dict[str, Any]) -> RedirectResponse:
    """The user said no (on the consent screen, or at their identity provider)."""
    return error_to_client(
        record["redirect_uri"], "access_denied", "the user denied the request", record["state"], record["issuer"]
    )
