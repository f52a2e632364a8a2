"""Base64url without padding (RFC 7515 section 2), as JWTs, sealed values and cookies carry it."""

from __future__ import annotations

import base64


def encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode(text: str) -> bytes:
    """The bytes, padding restored; ValueError (binascii.Error) when the text is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
