"""Cookies with the strictest attributes a browser honours: __Host- prefix, Secure, HttpOnly, SameSite=Lax,
Path=/, no Domain. A __Host- cookie cannot be set by a subdomain or over plain http from elsewhere, and is
sent back only to this exact host.

Reading them back is where the prefix's promise is easily lost. Browsers let any page on this host (another
port, plain http) or a sibling subdomain set a cookie whose name merely *looks* like ours: `\\xa0__Host-x`,
`__Host-x\\x85`, `\\x0b__Host-x`. A lenient parser (Starlette's `request.cookies`, Python's str.strip) drops
those bytes and hands the look-alike over as the real thing. So every security cookie is read here, from the
raw `Cookie` header bytes, with the name matched byte for byte; a name with any extra byte is another cookie,
and a name sent twice (a second cookie of that name injected under another Path or Domain) counts as absent.

Plain-http loopback development works too: browsers treat http://localhost and http://127.0.0.1 as secure
contexts and accept Secure cookies there.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

PREFIX = "__Host-"
MAX_COOKIE_BYTES = 3800  # under the 4096 most browsers allow for name, value and attributes together

_NAME = re.compile(r"[A-Za-z0-9\-]+")
_VALUE = re.compile(r"[A-Za-z0-9\-_.~]*")
_RAW_VALUE = re.compile(rb"[A-Za-z0-9\-_.~]+")


def host_cookie(name: str, value: str, max_age: int | None = None) -> str:
    """A Set-Cookie header value for `__Host-<name>`; max_age 0 deletes it."""
    if not _NAME.fullmatch(name) or not _VALUE.fullmatch(value):
        raise ValueError("cookie names and values must be plain tokens")
    attributes = f"{PREFIX}{name}={value}; Path=/; Secure; HttpOnly; SameSite=Lax"
    if max_age is not None:
        attributes += f"; Max-Age={max_age}"
    return attributes


def clear_cookie(name: str) -> str:
    return host_cookie(name, "", 0)


def _pairs(header: bytes) -> Iterable[tuple[bytes, bytes]]:
    # RFC 6265 section 4.2.1: cookie-pair *( ";" SP cookie-pair ). Only that one SP after a ";" is dropped
    # (browsers never store a name starting with SP); every other byte stays part of the name.
    for index, pair in enumerate(header.split(b";")):
        if index and pair.startswith(b" "):
            pair = pair[1:]
        name, equals, value = pair.partition(b"=")
        if equals:
            yield name, value


def read_host_cookie(scope: Mapping[str, Any], name: str) -> str | None:
    """The value of this request's `__Host-<name>` cookie, or None when it is absent, sent more than once, or
    not a plain token (which no cookie of ours ever is). `scope` is the ASGI scope (`request.scope`)."""
    if not _NAME.fullmatch(name):
        raise ValueError("cookie names must be plain tokens")
    wanted = (PREFIX + name).encode("ascii")
    found: list[bytes] = []
    for header_name, header_value in scope.get("headers", ()):
        if header_name.lower() == b"cookie":
            found.extend(value for key, value in _pairs(header_value) if key == wanted)
    if len(found) != 1 or not _RAW_VALUE.fullmatch(found[0]):
        return None
    return found[0].decode("ascii")
