"""Token material and the encryption that keeps a stolen database useless.

- Tokens are random (`new_token`) and stored only as `token_hash`es (SHA-256: tokens carry >= 192 random bits,
  so a fast hash is enough; there is nothing to brute-force).
- Grant data is sealed with AES-256-GCM under a random per-grant key (`seal_data`/`open_data`); that key is
  stored only wrapped by keys derived from the tokens that unlock it (`wrap_key`/`unwrap_key`, HKDF-SHA256).
  Without a live token, the grant key, and so the data, cannot be recovered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_BYTES = 32  # 256 bits; the issue asks for at least 192


def new_token(nbytes: int = TOKEN_BYTES) -> str:
    return secrets.token_urlsafe(nbytes)


def new_id(nbytes: int) -> str:
    """A random identifier operators type into `bastion admin`: never starting with '-', which a command line
    reads as an option (one draw in 32 is redrawn, so the id keeps nearly all of its entropy)."""
    while (drawn := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return drawn


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def same(a: str, b: str) -> bool:
    """Constant-time comparison of two strings."""
    return hmac.compare_digest(a.encode(), b.encode())


def new_key() -> bytes:
    return AESGCM.generate_key(bit_length=256)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text.encode("ascii"))


def seal_data(key: bytes, plaintext: bytes, context: bytes = b"") -> str:
    nonce = os.urandom(12)
    return _b64(nonce + AESGCM(key).encrypt(nonce, plaintext, context))


def open_data(key: bytes, sealed: str, context: bytes = b"") -> bytes | None:
    """The plaintext, or None if the key is wrong or the data was altered."""
    try:
        raw = _unb64(sealed)
        return AESGCM(key).decrypt(raw[:12], raw[12:], context)
    except (InvalidTag, ValueError):
        return None


def _token_key(token: str) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion grant-key wrap").derive(token.encode())


def wrap_key(key: bytes, token: str) -> str:
    return seal_data(_token_key(token), key, b"grant-key")


def unwrap_key(wrapped: str, token: str) -> bytes | None:
    return open_data(_token_key(token), wrapped, b"grant-key")
