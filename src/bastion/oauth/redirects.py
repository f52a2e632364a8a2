"""Redirect URIs: what registration accepts, and how /authorize matches them.

Accepted: https URLs, and http URLs on a loopback address (RFC 8252 section 7.3) for native apps. Refused:
every other scheme (javascript:, data:, file:, custom schemes), fragments, user info, and any whitespace,
control or non-ASCII character anywhere (the tricks that make a parser and a browser disagree).
Matching is exact string comparison, except that a loopback http URI may use any port.
"""

from __future__ import annotations

from urllib.parse import urlsplit

MAX_URI = 2000
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}


def _clean(uri: str) -> bool:
    return uri.isascii() and all(0x20 < ord(c) < 0x7F for c in uri) and "\\" not in uri


def is_loopback_http(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and "@" not in parts.netloc
    except ValueError:
        return False


def problem(uri: object, application_type: str) -> str | None:
    """Why `uri` cannot be registered, or None if it can."""
    if not isinstance(uri, str) or not uri:
        return "redirect URIs must be non-empty strings"
    if len(uri) > MAX_URI:
        return f"redirect URIs are limited to {MAX_URI} characters"
    if not _clean(uri):
        return "redirect URIs may not contain whitespace, control, backslash or non-ASCII characters"
    try:
        parts = urlsplit(uri)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "redirect URI is not a valid URL"
    if parts.scheme not in ("https", "http"):
        return "redirect URIs must use https (or http on a loopback address)"
    if not parts.hostname or "@" in parts.netloc:
        return "redirect URIs need a host and may not carry user information"
    if parts.fragment or "#" in uri:
        return "redirect URIs may not contain a fragment"
    if parts.scheme == "http":
        if not is_loopback_http(uri):
            return "plain http redirect URIs are allowed only on a loopback address"
        if application_type == "web":
            return "web applications must use https redirect URIs; register as application_type native"
    return None


def matches(registered: str, requested: str) -> bool:
    """Exact match; for loopback http, any port (native apps pick a free one at run time)."""
    if requested == registered:
        return True
    if not (is_loopback_http(registered) and is_loopback_http(requested)):
        return False
    if "#" in requested or not _clean(requested):
        return False
    try:
        a, b = urlsplit(registered), urlsplit(requested)
        b.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return (a.hostname, a.path, a.query) == (b.hostname, b.path, b.query)
