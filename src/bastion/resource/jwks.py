"""An issuer's signing keys (a JWK Set), each held to the algorithms it may verify.

A key names its algorithm (`alg`) or gets the ones its type implies: RSA the RSxxx and PSxxx family, an EC key
the one algorithm of its curve, Ed25519 EdDSA. Symmetric (`oct`) keys are never used, nor keys marked for
encryption, nor RSA keys under 2048 bits. A token naming a key id the set does not have makes the set refresh,
at most once per REFRESH_SECONDS whatever the number of such tokens, so forged kids cannot turn the server into
a JWKS flooder; keys also refresh on their own every KEYS_SECONDS.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from jwt import PyJWK
from jwt.exceptions import PyJWTError

from .discovery import IssuerUnavailable

log = logging.getLogger("bastion.resource")

REFRESH_SECONDS = 30.0
KEYS_SECONDS = 3600.0
MAX_KEYS = 64
MIN_RSA_BITS = 2048
_RSA = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC = {"P-256": "ES256", "P-384": "ES384", "P-521": "ES512"}


def algorithms_for(jwk: dict[str, Any]) -> set[str]:
    """The algorithms a JWK may verify; empty when it must not be used for signatures at all."""
    kty, alg = jwk.get("kty"), jwk.get("alg")
    if jwk.get("use", "sig") != "sig":
        return set()
    ops = jwk.get("key_ops")
    if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
        return set()
    if kty == "RSA":
        implied = set(_RSA)
    elif kty == "EC":
        curve = _EC.get(jwk.get("crv", ""))
        implied = {curve} if curve else set()
    elif kty == "OKP" and jwk.get("crv") == "Ed25519":
        implied = {"EdDSA"}
    else:
        return set()  # oct (HMAC) keys above all: a public key set has no business holding one
    if alg is not None:
        return {alg} & implied if isinstance(alg, str) else set()
    return implied


class KeySet:
    def __init__(
        self,
        load: Callable[[], Awaitable[dict[str, Any]]],
        allowed: set[str],
        name: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._load = load  # fetches the JWK Set document
        self.allowed = allowed
        self.name = name
        self._clock = clock  # paces refreshes (tests drive it)
        self._keys: dict[str | None, list[tuple[dict[str, Any], set[str]]]] = {}
        self._built: dict[tuple[int, str], PyJWK] = {}
        self._loaded_at: float | None = None
        self._attempted_at = -REFRESH_SECONDS
        self._refreshing: asyncio.Future[None] | None = None

    async def key(self, kid: str | None, alg: str) -> PyJWK | None:
        """The key to check a token signed with `alg` by key `kid`, or None when there is no such usable key."""
        if self._refreshing is not None:
            await asyncio.shield(self._refreshing)  # a fetch is under way: its keys are the ones to use
        now = self._clock()
        stale = self._loaded_at is None or now - self._loaded_at > KEYS_SECONDS
        if stale and now - self._attempted_at >= REFRESH_SECONDS:
            await self._refresh()
        found = self._find(kid, alg)
        if found is None and kid not in self._keys and self._clock() - self._attempted_at >= REFRESH_SECONDS:
            await self._refresh()  # perhaps a rotation: look once more, at most every REFRESH_SECONDS
            found = self._find(kid, alg)
        if found is None and self._loaded_at is None:
            raise IssuerUnavailable(f"{self.name}: signing keys unavailable")
        return found

    def _find(self, kid: str | None, alg: str) -> PyJWK | None:
        if alg not in self.allowed:
            return None
        if kid is None:
            # Without a kid the choice must be unambiguous: exactly one key that can verify this algorithm.
            candidates = [entry for entries in self._keys.values() for entry in entries if alg in entry[1]]
            if len(candidates) != 1:
                return None
        else:
            candidates = [entry for entry in self._keys.get(kid, []) if alg in entry[1]]
        for jwk, _ in candidates[:1]:
            return self._build(jwk, alg)
        return None

    def _build(self, jwk: dict[str, Any], alg: str) -> PyJWK | None:
        cached = self._built.get((id(jwk), alg))
        if cached is None:
            try:
                cached = PyJWK(jwk, algorithm=alg)
            except (PyJWTError, ValueError, TypeError, KeyError):
                return None
            size = getattr(cached.key, "key_size", None)
            if jwk.get("kty") == "RSA" and (size is None or size < MIN_RSA_BITS):
                return None
            self._built[(id(jwk), alg)] = cached
        return cached

    async def _refresh(self) -> None:
        # Concurrent callers share one fetch.
        if self._refreshing is None:
            self._refreshing = asyncio.ensure_future(self._fetch())
            self._refreshing.add_done_callback(lambda _: setattr(self, "_refreshing", None))
        await asyncio.shield(self._refreshing)

    async def _fetch(self) -> None:
        self._attempted_at = self._clock()
        try:
            document = await self._load()
        except IssuerUnavailable as exc:
            log.warning("%s: could not refresh signing keys: %s", self.name, exc)
            return
        keys = document.get("keys")
        if not isinstance(keys, list):
            log.warning("%s: the JWK Set has no keys list", self.name)
            return
        usable: dict[str | None, list[tuple[dict[str, Any], set[str]]]] = {}
        for jwk in keys[:MAX_KEYS]:
            if not isinstance(jwk, dict):
                continue
            algorithms = algorithms_for(jwk) & self.allowed
            kid = jwk.get("kid")
            if algorithms and (kid is None or isinstance(kid, str)):
                usable.setdefault(kid, []).append((jwk, algorithms))
        self._keys, self._built = usable, {}
        self._loaded_at = self._clock()
