"""Grants and the tokens that carry them: issue, exchange, rotate, revoke, verify.

A grant is one user's consent for one client to one resource, with some scopes. Its identity details (and,
later, upstream tokens) are encrypted under a random grant key; every code and token stores that key wrapped
by a key derived from itself. Tokens look like `<grant id>.<secret>` and are stored only as hashes, under
keys that start with the grant id, so that revoking a grant deletes everything it issued in one commit.

Records (store/keys.py builds every key; docs/storage.md has the full list):
  grant:<g>                  client, subject, scopes, resource, sealed props
  code:<g>:<hash>            one authorization code: client, redirect_uri, PKCE challenge, wrapped key
  usedcode:<g>:<hash>        a redeemed code and its client, so that its client's replay revokes the grant
  access:<g>:<hash>          an access token: client, subject, scopes, resource, expiry, wrapped key
  refresh:<g>:<hash>         a refresh token: client, scopes, resource, wrapped key
  rotated:<g>:<hash>         a refresh token already used once and its client, so that its reuse revokes the grant
  lease:<g>:<provider>       held by the one instance renewing the grant's token at that provider (30 s at most)

A replay revokes only when the client the code or token was issued to presents it: another client (which may
register freely) cannot end someone else's grant by replaying what it saw. Markers written before they named
their client are empty; those still revoke on any replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import orjson

from ..ops.audit import AuditEvent
from ..principal import Principal
from ..security.crypto import (
    new_id,
    new_key,
    new_token,
    open_data,
    pkce_challenge,
    same,
    seal_data,
    token_hash,
    unwrap_key,
    wrap_key,
)
from ..store import Commit, Store, StoreUnavailable, keys
from ..store.bus import GRANT_REVOKED, Bus
from .errors import OAuthError, invalid_grant

GRANT_ID_BYTES = 16
# An upstream renewal holds the grant's lease at most this long; a lease its crashed holder left expires then.
LEASE_SECONDS = 30.0
# How often a caller waiting for another instance's renewal looks at the grant again.
LEASE_POLL_SECONDS = 0.1

# A one-time record's key, and the key of the marker left once it is used (whose replay revokes the grant).
_ONE_TIME: dict[str, tuple[Callable[[str, str], str], Callable[[str, str], str]]] = {
    "code": (keys.code, keys.used_code),
    "refresh": (keys.refresh_token, keys.rotated_refresh),
}


@dataclass(frozen=True)
class Lifetimes:
    code: int = 300
    access: int = 3600
    refresh: int = 30 * 86400


REVOKED = {"grant_revoked": True}  # an audit event's details: what a replay cost its grant


@dataclass
class TokenSet:
    access_token: str
    refresh_token: str | None
    expires_in: int
    scope: str
    grant_id: str = ""  # for the audit trail, never in the response
    subject: str = ""

    def response(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token:
            body["refresh_token"] = self.refresh_token
        return body


def split_token(token: str) -> tuple[str, str] | None:
    """(grant id, hash) for a well-formed token, None for anything else."""
    if not isinstance(token, str) or len(token) > 512 or token.count(".") != 1:
        return None
    grant_id, secret = token.split(".")
    if not grant_id or not secret or not (grant_id + secret).replace("-", "").replace("_", "").isalnum():
        return None
    return grant_id, token_hash(token)


def pkce_matches(verifier: str, challenge: str) -> bool:
    return same(pkce_challenge(verifier), challenge)


class UpstreamTokens(Protocol):
    """Renews and revokes the tokens users' identity providers issued them (kept sealed in their grants)."""

    async def refresh(self, provider: str, token: dict[str, Any]) -> dict[str, Any] | None: ...

    async def revoke(self, provider: str, token: dict[str, Any]) -> None: ...


class Grants:
    def __init__(
        self,
        store: Store,
        lifetimes: Lifetimes | None = None,
        *,
        bus: Bus | None = None,
        upstream: UpstreamTokens | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        audit: Callable[[AuditEvent], None] | None = None,
    ) -> None:
        self.store = store
        self.audit = audit  # told of replays and revocations (ops/audit.py)
        self.lifetimes = lifetimes or Lifetimes()
        # Told of every revocation, so that caches of verified tokens forget at once.
        self.bus = bus
        self.upstream = upstream
        # Wall-clock seconds (upstream tokens' expiries are wall-clock) and the pause between two looks at a grant
        # another instance is renewing: tests drive both.
        self._clock = clock
        self._sleep = sleep
        # One lock per (grant, provider) being renewed; a lock disappears once nobody holds or awaits it. Within
        # one instance it spares the store the lease round trips; across instances the lease decides.
        self._refreshing: weakref.WeakValueDictionary[tuple[str, str], asyncio.Lock] = weakref.WeakValueDictionary()

    async def _revoked(self, grant_id: str) -> None:
        if self.bus is not None:
            await self.bus.publish(GRANT_REVOKED, {"grant": grant_id})

    # --- authorization -----------------------------------------------------------------------------------
    def new_authorization(
        self,
        *,
        client_id: str,
        subject: str,
        scopes: list[str],
        resource: str,
        redirect_uri: str,
        code_challenge: str,
        props: dict[str, Any] | None = None,
    ) -> tuple[str, Commit]:
        """A new grant and its one-time authorization code: the code, and the change that records both (the
        caller adds what must happen with it, such as consuming the authorization transaction)."""
        grant_id = new_id(GRANT_ID_BYTES)
        key = new_key()
        code = f"{grant_id}.{new_token()}"
        grant = {
            "client_id": client_id,
            "subject": subject,
            "scopes": scopes,
            "resource": resource,
            "created_at": int(time.time()),
            "props": seal_data(key, orjson.dumps(props or {}), grant_id.encode()),
        }
        code_record = {
            "client_id": client_id,
            "redirect_uri": redirect_uri,
            "code_challenge": code_challenge,
            "resource": resource,
            "scopes": scopes,
            "subject": subject,
            "wrapped_key": wrap_key(key, code),
        }
        change = (
            Commit()
            .set(keys.grant(grant_id), grant, self.lifetimes.refresh)
            .set(keys.code(grant_id, token_hash(code)), code_record, self.lifetimes.code)
        )
        return code, change

    async def authorize(self, **request: Any) -> str:
        """Record a new grant and return its one-time authorization code (new_authorization's arguments)."""
        code, change = self.new_authorization(**request)
        await self.store.commit(change)
        return code

    async def exchange_code(
        self,
        code: str,
        *,
        client_id: str,
        redirect_uri: str | None,
        code_verifier: str | None,
        resource: str | None,
    ) -> TokenSet:
        grant_id, code_hash, code_key, record, _ = await self._redeemable(code, "code", client_id)
        # Every binding is checked before anything changes: a failed attempt leaves the code as it was.
        if redirect_uri is None or redirect_uri != record["redirect_uri"]:
            raise invalid_grant("redirect_uri does not match the authorization request")
        if not code_verifier or not _valid_verifier(code_verifier):
            raise invalid_grant("a code_verifier (43-128 unreserved characters) is required")
        if not pkce_matches(code_verifier, record["code_challenge"]):
            raise invalid_grant("code_verifier does not match the code_challenge")
        if resource is not None and resource != record["resource"]:
            raise OAuthError("invalid_target", "resource does not match the authorization request")
        key = unwrap_key(record["wrapped_key"], code)
        if key is None:
            raise invalid_grant("the authorization code is invalid")
        tokens, change = self._issue(grant_id, key, record, record["scopes"])
        change.consume.append(code_key)
        change.set(keys.used_code(grant_id, code_hash), {"client_id": client_id}, self.lifetimes.refresh)
        await self._commit_or_revoke(change, grant_id, "code", client_id)
        return tokens

    # --- refresh ---------------------------------------------------------------------------------------------
    async def refresh(
        self, refresh_token: str, *, client_id: str, scopes: list[str] | None, resource: str | None
    ) -> TokenSet:
        grant_id, hashed, key_name, record, grant = await self._redeemable(refresh_token, "refresh", client_id)
        if resource is not None and resource != record["resource"]:
            raise OAuthError("invalid_target", "resource does not match the grant")
        granted = record["scopes"]
        if scopes is not None and not set(scopes) <= set(granted):
            raise OAuthError("invalid_scope", "a refresh can only narrow the granted scopes")
        key = unwrap_key(record["wrapped_key"], refresh_token)
        if key is None:
            raise invalid_grant("the refresh token is invalid")
        # The new refresh token keeps the grant's full scopes; only the access token narrows.
        tokens, change = self._issue(
            grant_id, key, record, scopes if scopes is not None else granted, refresh_scopes=granted
        )
        change.consume.append(key_name)
        change.set(keys.rotated_refresh(grant_id, hashed), {"client_id": client_id}, self.lifetimes.refresh)
        if grant is None:
            raise invalid_grant("the grant was revoked")
        change.set(keys.grant(grant_id), grant, self.lifetimes.refresh)  # a used grant lives on
        await self._commit_or_revoke(change, grant_id, "refresh", client_id)
        return tokens

    async def _redeemable(
        self, token: str, kind: Literal["code", "refresh"], client_id: str
    ) -> tuple[str, str, str, dict[str, Any], dict[str, Any] | None]:
        """(grant id, hash, key, record, grant record or None) of a live one-time code or refresh token issued to
        this client. The token's record and its grant's are read together: one round trip to the store.

        One already used (its used-code or rotated marker exists) is a replay, and revokes its whole grant when the
        client it was issued to presents it; any other client is only refused.
        """
        parsed = split_token(token)
        if parsed is None:
            raise invalid_grant(f"the {kind} token is malformed")
        grant_id, hashed = parsed
        live_key, used_key = _ONE_TIME[kind]
        key = live_key(grant_id, hashed)
        record, grant = await self.store.get_many([key, keys.grant(grant_id)])
        if record is None:
            await self._revoke_if_replayed(used_key(grant_id, hashed), grant_id, client_id, kind)
            raise invalid_grant(f"the {kind} token is invalid, expired or already used")
        if record["client_id"] != client_id:
            raise invalid_grant(f"the {kind} token was issued to another client")
        return grant_id, hashed, key, record, grant

    async def _commit_or_revoke(
        self, change: Commit, grant_id: str, kind: Literal["code", "refresh"], client_id: str
    ) -> None:
        """Apply a redemption; if its one-time record is gone, someone used it a moment ago: a replay."""
        if not await self.store.commit(change):
            await self.revoke_grant(grant_id)
            self._replayed(kind, grant_id, client_id)
            raise invalid_grant("the token was already used")

    def _replayed(self, kind: Literal["code", "refresh"], grant_id: str, client_id: str) -> None:
        if self.audit is not None:
            what = "code.replayed" if kind == "code" else "refresh.reused"
            self.audit(AuditEvent(what, "failure", client_id=client_id, grant_id=grant_id, details=REVOKED))

    def _issue(
        self,
        grant_id: str,
        key: bytes,
        source: dict[str, Any],
        scopes: list[str],
        refresh_scopes: list[str] | None = None,
    ) -> tuple[TokenSet, Commit]:
        access = f"{grant_id}.{new_token()}"
        refresh = f"{grant_id}.{new_token()}"
        base = {"client_id": source["client_id"], "resource": source["resource"], "subject": source["subject"]}
        change = Commit()
        change.set(
            keys.access_token(grant_id, token_hash(access)),
            {
                **base,
                "scopes": scopes,
                "expires_at": time.time() + self.lifetimes.access,
                "wrapped_key": wrap_key(key, access),
            },
            self.lifetimes.access,
        )
        change.set(
            keys.refresh_token(grant_id, token_hash(refresh)),
            {**base, "scopes": refresh_scopes or scopes, "wrapped_key": wrap_key(key, refresh)},
            self.lifetimes.refresh,
        )
        tokens = TokenSet(access, refresh, self.lifetimes.access, " ".join(scopes), grant_id, source["subject"])
        return tokens, change

    # --- revocation -----------------------------------------------------------------------------------------
    async def revoke_grant(self, grant_id: str) -> None:
        await self.store.commit(Commit(delete=[keys.grant(grant_id)], delete_prefix=keys.issued_under(grant_id)))
        await self._revoked(grant_id)

    async def _revoke_if_replayed(
        self, marker: str, grant_id: str, client_id: str, kind: Literal["code", "refresh"]
    ) -> None:
        used = await self.store.get(marker)
        if used is None:
            return
        # The client binding comes before the replay rule; an empty (older) marker names no client.
        owner = used.get("client_id")
        if owner is None or owner == client_id:
            await self.revoke_grant(grant_id)
            self._replayed(kind, grant_id, client_id)

    async def revoke_token(self, token: str, client_id: str) -> None:
        """RFC 7009: a client's refresh token ends its grant; its access token ends only itself.
        Unknown tokens and other clients' tokens change nothing."""
        parsed = split_token(token)
        if parsed is None:
            return
        grant_id, hashed = parsed
        refresh = await self.store.get(keys.refresh_token(grant_id, hashed))
        if refresh is not None and refresh["client_id"] == client_id:
            key = unwrap_key(refresh["wrapped_key"], token)
            found = await self._open_props(grant_id, key) if key is not None else None
            # Revoked here first: a provider that cannot be reached must not leave the grant alive.
            await self.revoke_grant(grant_id)
            if self.audit is not None:
                subject = refresh.get("subject")
                self.audit(AuditEvent("grant.revoked", subject=subject, client_id=client_id, grant_id=grant_id))
            if self.upstream is not None:
                for provider, upstream_token in ((found[1].get("upstream") or {}) if found else {}).items():
                    await self.upstream.revoke(provider, upstream_token)
            return
        access_key = keys.access_token(grant_id, hashed)
        access = await self.store.get(access_key)
        if access is not None and access["client_id"] == client_id:
            await self.store.commit(Commit(delete=[access_key]))
            await self._revoked(grant_id)
            if self.audit is not None:
                subject = access.get("subject")
                self.audit(AuditEvent("token.revoked", subject=subject, client_id=client_id, grant_id=grant_id))

    # --- verification -------------------------------------------------------------------------------------------
    async def verify(self, token: str, resource: str) -> Principal | None:
        """The principal an access token stands for, if it is live and was issued for `resource`."""
        parsed = split_token(token)
        if parsed is None:
            return None
        grant_id, hashed = parsed
        record = await self.store.get(keys.access_token(grant_id, hashed))
        if record is None or record["expires_at"] <= time.time() or record["resource"] != resource:
            return None
        claims: dict[str, Any] = {}
        grant = await self.store.get(keys.grant(grant_id))
        if grant is None:
            return None
        key = unwrap_key(record["wrapped_key"], token)
        if key is not None:
            opened = open_data(key, grant["props"], grant_id.encode())
            claims = orjson.loads(opened) if opened else {}
        upstream = claims.pop("upstream", {}) if isinstance(claims, dict) else {}
        refresh = None
        if upstream and key is not None and self.upstream is not None:
            grant_key = key

            async def refresh(provider: str) -> dict[str, Any] | None:
                return await self._refresh_upstream(grant_id, grant_key, provider)

        return Principal(
            subject=record["subject"],
            client_id=record["client_id"],
            scopes=frozenset(record["scopes"]),
            resource=record["resource"],
            expires_at=record["expires_at"],
            claims=claims,
            upstream=upstream if isinstance(upstream, dict) else {},
            refresh=refresh,
        )

    # --- upstream tokens -----------------------------------------------------------------------------------
    async def _open_props(self, grant_id: str, key: bytes) -> tuple[dict[str, Any], dict[str, Any]] | None:
        grant = await self.store.get(keys.grant(grant_id))
        opened = open_data(key, grant["props"], grant_id.encode()) if grant else None
        return (grant, orjson.loads(opened)) if grant and opened else None

    async def _upstream_token(
        self, grant_id: str, key: bytes, provider: str
    ) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]] | None:
        """The grant, its opened props and its token at `provider`; None if any is gone."""
        found = await self._open_props(grant_id, key)
        if found is None:
            return None
        grant, props = found
        token = (props.get("upstream") or {}).get(provider)
        return (grant, props, token) if isinstance(token, dict) else None

    def _fresh(self, token: dict[str, Any]) -> bool:
        expires_at = token.get("expires_at")
        return isinstance(expires_at, int | float) and expires_at - 60 > self._clock()

    async def _refresh_upstream(self, grant_id: str, key: bytes, provider: str) -> dict[str, Any] | None:
        """Renew a grant's upstream token: one refresh at a time per grant and provider, across every instance on
        the store; callers that waited get the token the renewing one obtained.

        The instance that creates `lease:<grant>:<provider>` renews; the others look at the grant every
        LEASE_POLL_SECONDS until the renewed token appears, or take the lease once its holder let it go (or
        crashed and it expired). A caller waits at most about LEASE_SECONDS, then returns the token it finds."""
        lock = self._refreshing.get((grant_id, provider))
        if lock is None:
            lock = self._refreshing[(grant_id, provider)] = asyncio.Lock()
        async with lock:
            found = await self._upstream_token(grant_id, key, provider)
            if found is None or self._fresh(found[2]):
                return found[2] if found else None  # someone renewed it while we waited
            lease = keys.upstream_lease(grant_id, provider)
            deadline = self._clock() + LEASE_SECONDS + 2 * LEASE_POLL_SECONDS
            while not await self.store.commit(Commit().add(lease, {}, LEASE_SECONDS)):
                if self._clock() >= deadline:
                    return found[2]  # its holder neither renewed nor let go in time: what there is
                await self._sleep(LEASE_POLL_SECONDS)
                found = await self._upstream_token(grant_id, key, provider)
                if found is None or self._fresh(found[2]):
                    return found[2] if found else None
            taken_at = self._clock()
            try:
                # Read again under the lease: another instance may have renewed between our look and the lease.
                found = await self._upstream_token(grant_id, key, provider)
                if found is None or self._fresh(found[2]):
                    return found[2] if found else None
                return await self._renew(grant_id, key, provider, *found)
            finally:
                # Let the next one go now, unless the lease may have expired and be someone else's already. If
                # this fails, the lease expires by itself and waiters find the renewed token meanwhile.
                if self._clock() - taken_at < LEASE_SECONDS - 1:
                    with contextlib.suppress(StoreUnavailable):
                        await self.store.commit(Commit(consume=[lease]))

    async def _renew(
        self,
        grant_id: str,
        key: bytes,
        provider: str,
        grant: dict[str, Any],
        props: dict[str, Any],
        token: dict[str, Any],
    ) -> dict[str, Any] | None:
        assert self.upstream is not None
        renewed = await self.upstream.refresh(provider, token)
        if renewed is None:
            return None
        props["upstream"][provider] = renewed
        grant["props"] = seal_data(key, orjson.dumps(props), grant_id.encode())
        # Written back only if the grant still exists: one revoked while the provider answered stays revoked.
        grant_key = keys.grant(grant_id)
        if not await self.store.commit(Commit(consume=[grant_key]).set(grant_key, grant, self.lifetimes.refresh)):
            await self.upstream.revoke(provider, renewed)  # nothing holds it any more
            return None
        return renewed


def _valid_verifier(verifier: str) -> bool:
    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
    return 43 <= len(verifier) <= 128 and set(verifier) <= allowed
