"""How far the consent screen may vouch for a client that a metadata document identifies.

A client_id URL proves that its domain published the document, not that the browser will go back to that
domain. Two cases undo the proof, and the MCP security best practices ask that the user be warned:

* the redirect URI is on loopback: any program on the user's computer can listen there, so any of them can pose
  as the verified client (a desktop app's document lists only loopback URIs, and anyone can point at it);
* the redirect URI is on another origin than the client_id: the authorization code goes to a site that the
  verified domain named, but that is not itself verified.

What counts is the redirect URI of this request, the one the code will be sent to.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from .clients import Client
from .redirects import is_loopback_http

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _origin(url: str) -> tuple[str, str, int | None] | None:
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port if port is not None else _DEFAULT_PORTS.get(scheme)


def verified_domain(client: Client) -> str | None:
    """The domain a metadata document client proves, or None for any other client."""
    return urlsplit(client.client_id).hostname if client.metadata_document else None


def identity_warning(client: Client, redirect_uri: str) -> str | None:
    """Why the consent screen should not take the verified domain at its word, or None."""
    domain = verified_domain(client)
    if domain is None:
        return None  # unverified clients get the general warning instead
    if is_loopback_http(redirect_uri):
        return (
            f"This application sends you back to this computer (localhost), not to {domain}. Any program "
            f"running on this computer could claim to be {domain}: allow only if you started this sign-in "
            "yourself, from the application you expect."
        )
    target = _origin(redirect_uri)
    if target is None or target != _origin(client.client_id):
        host = urlsplit(redirect_uri).netloc or redirect_uri
        return (
            f"This application sends you back to {host}, which is not {domain}. {domain} vouches for the "
            f"application, not for {host}: allow only if you trust {host} as well."
        )
    return None
