"""What a refusal must look like, beyond its status: the OAuth error JSON, the JSON-RPC error, the bearer
challenge. Each returns the parsed body for any further check."""

from __future__ import annotations

from typing import Any

import httpx


def oauth_error(response: httpx.Response, status: int, error: str) -> dict[str, Any]:
    """An RFC 6749 error answer: this status, this `error` code, never cached."""
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error, body
    assert response.headers["cache-control"] == "no-store"
    return dict(body)


def jsonrpc_error(response: httpx.Response, status: int, code: int) -> dict[str, Any]:
    """A JSON-RPC error answer at this HTTP status with this error code; returns the error object."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert body["jsonrpc"] == "2.0" and "result" not in body, body
    assert body["error"]["code"] == code, body
    return dict(body["error"])


def bearer_challenge(response: httpx.Response, status: int, error: str | None = None) -> str:
    """A refusal carrying a Bearer challenge (RFC 6750): naming `error` when given, none when not."""
    assert response.status_code == status, response.text
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith("Bearer "), challenge
    if error is None:
        assert "error=" not in challenge, challenge
    else:
        assert f'error="{error}"' in challenge, challenge
    return challenge
