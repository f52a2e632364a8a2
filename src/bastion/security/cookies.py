"""Cookies with the strictest attributes a browser honours: __Host- prefix, Secure, HttpOnly, SameSite=Lax,
Path=/, no Domain. A __Host- cookie cannot be set by a subdomain or over plain http from elsewhere, and is
sent back only to this exact host.

Plain-http loopback development works too: browsers treat http://localhost and http://127.0.0.1 as secure
contexts and accept Secure cookies there.
"""

from __future__ import annotations

PREFIX = "__Host-"
MAX_COOKIE_BYTES = 3800  # under the 4096 most browsers allow for name, value and attributes together


def host_cookie(name: str, value: str, max_age: int | None = None) -> str:
    """A Set-Cookie header value for `__Host-<name>`; max_age 0 deletes it."""
    if not name.replace("-", "").isalnum() or not all(c.isalnum() or c in "-_.~" for c in value):
        raise ValueError("cookie names and values must be plain tokens")
    attributes = f"{PREFIX}{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax"
    if max_age is not None:
        attributes += f"; Max-Age={max_age}"
    return attributes


def clear_cookie(name: str) -> str:
    return host_cookie(name, "", 0)
