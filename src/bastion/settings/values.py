"""Checks of single values that several sections share: short names, https URLs, loopback hosts."""

from __future__ import annotations

import ipaddress
from urllib.parse import urlsplit


def short_name(value: str) -> str:
    if not value or len(value) > 32 or not all(c.isascii() and (c.isalnum() or c == "-") for c in value):
        raise ValueError("name must be 1-32 letters, digits or '-'")
    return value.lower()


def https_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError("must be an absolute https URL")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ValueError("must use https (plain http only on loopback, for development)")
    return value


def ip_networks(value: list[str], whose: str) -> list[str]:
    """`value` if every entry is an IP address or CIDR network; else a ValueError naming the entry, `whose`
    addresses to list instead ("the proxies'"), and an example."""
    for entry in value:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            raise ValueError(
                f'{entry!r} is not an IP address or network: list {whose} addresses, e.g. ["127.0.0.1", "10.0.0.0/24"]'
            ) from None
    return value


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
