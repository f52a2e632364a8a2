"""Redirect URIs: what registration accepts, and how /authorize matches them.

Accepted: https URLs, and http URLs on a loopback address (RFC 8252 section 7.3) for native apps. Refused:
every other scheme (javascript:, data:, file:, custom schemes), fragments, user info, any whitespace, control
or non-ASCII character anywhere (the tricks that make a parser and a browser disagree), and any host that is
not a plain DNS name or IP literal: no wildcards (`*.example.com`), percent-encoding (`%2a`) or other symbols,
which some other server or a later matcher might read as a pattern.
Matching is exact string comparison, except that a loopback http URI may use any port.
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import SplitResult, urlsplit

MAX_URI = 2000
LOOPBACK_HOSTS = {"127.0.0.1", "::1", "localhost"}
# Dot-separated labels of letters, digits, '-' and '_' (hostname() is lower case), an optional final dot.
_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _clean(uri: str) -> bool:
    return uri.isascii() and all(0x20 < ord(c) < 0x7F for c in uri) and "\\" not in uri


def is_loopback_http(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        return parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS and "@" not in parts.netloc
    except ValueError:
        return False


def _plain_host(parts: SplitResult) -> bool:
    """A DNS name or an IP literal, nothing that could be a pattern or decode into something else."""
    host = parts.hostname or ""
    if parts.netloc.startswith("["):
        if "%" in host:
            return False  # a zone id ("%25eth0") means nothing outside this machine
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _NAME.fullmatch(host) is not None


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
    if not _plain_host(parts):
        return "redirect URI hosts must be plain DNS names or IP addresses (no wildcards or percent-encoding)"
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
