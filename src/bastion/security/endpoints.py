"""Is this URL fit to be a server's endpoint (one we redirect a browser to, post secrets to, or fetch from)?

Endpoints come from documents other servers publish (an identity provider's discovery document). Whatever that
document says ends up in a Location header or receives a client secret, so only an absolute ``https://`` URL
is accepted (or ``http://`` on a loopback host, for development): not ``javascript:``, ``data:``, ``file:`` or
any other scheme, not a relative or scheme-relative reference, no user information, no fragment, and none of
the characters (whitespace, controls, backslashes, non-ASCII) on which parsers and browsers disagree.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit

__all__ = ["endpoint_problem", "is_loopback_host"]

MAX_URL_CHARS = 2000


def is_loopback_host(host: str) -> bool:
    """localhost, 127.0.0.0/8 or ::1 (a host name from urlsplit: lower-case, IPv6 without brackets)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_problem(value: object) -> str | None:
    """Why `value` cannot be used as an endpoint URL, or None if it can. Never quotes the value."""
    if not isinstance(value, str) or not value:
        return "is not a URL string"
    if len(value) > MAX_URL_CHARS:
        return f"is longer than {MAX_URL_CHARS} characters"
    if not value.isascii() or any(c <= " " or c == "\x7f" for c in value) or "\\" in value:
        return "contains whitespace, control, backslash or non-ASCII characters"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "is not a valid URL"
    if not parts.scheme:
        return "is not an absolute URL"
    if parts.scheme not in ("https", "http"):
        return "does not use https"
    if not parts.hostname:
        return "has no host"
    if "@" in parts.netloc:
        return "carries user information"
    if parts.fragment or "#" in value:
        return "has a fragment"
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        return "uses plain http on a host that is not loopback"
    return None
