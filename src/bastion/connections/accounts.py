"""Users' connected accounts: one token per (user, connection), encrypted at rest, given to tools and renewed
when it expires, one renewal at a time across every instance on the store.

A record (`connected:<sha256(subject)>:<connection>`) keeps in the clear what the account pages show (the
account at the provider, the granted scopes, when) and, sealed with AES-256-GCM under a key derived from
`state_secret` and bound to the record's key, the tokens: a dump of the store without that secret yields none,
and a sealed token copied under another user's key does not open.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ..mcp.connect import NotConnected
from ..security.crypto import open_data, seal_data, token_hash
from ..store import Commit, Store, StoreUnavailable, keys
from .provider import ConnectionProvider, ProviderUnreachable

LEASE_SECONDS = 30
LEASE_POLL_SECONDS = 0.2
EARLY_SECONDS = 60  # a token this close to expiring is renewed before it is used


def accounts_key(state_secret: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"bastion connected accounts").derive(
        state_secret
    )


@dataclass(frozen=True)
class Account:
    connection: str
    label: str  # the provider's name as users see it
    account: str | None  # who they are there
    scopes: tuple[str, ...]
    connected_at: float


class ConnectedAccounts:
    def __init__(
        self,
        store: Store,
        providers: Mapping[str, ConnectionProvider],
        key: bytes,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.store = store
        self.providers = dict(providers)
        self._key = key
        self._clock = clock
        self._sleep = sleep
        self._renewing: dict[tuple[str, str], asyncio.Lock] = {}

    def __contains__(self, connection: object) -> bool:
        return connection in self.providers

    # --- reading and writing -------------------------------------------------------------------------------
    @staticmethod
    def _key_of(subject: str, connection: str) -> str:
        return keys.connected_account(token_hash(subject), connection)

    async def _record(self, subject: str, connection: str) -> dict[str, Any] | None:
        """The user's record at `connection` (None if none, or if it is not theirs)."""
        record = await self.store.get(self._key_of(subject, connection))
        return record if record is not None and record.get("subject") == subject else None

    def _open(self, subject: str, connection: str, record: dict[str, Any]) -> dict[str, Any] | None:
        """The tokens sealed in `record`; None if they do not open (sealed under another state_secret, or copied
        from another user's key): as good as not connected."""
        opened = open_data(self._key, str(record.get("x", "")), self._key_of(subject, connection).encode())
        return orjson.loads(opened) if opened is not None else None

    def _sealed(self, subject: str, connection: str, token: Mapping[str, Any]) -> str:
        secret = {k: token.get(k) for k in ("access_token", "refresh_token", "expires_at")}
        return seal_data(self._key, orjson.dumps(secret), self._key_of(subject, connection).encode())

    async def _opened(self, subject: str, connection: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
        record = await self._record(subject, connection)
        token = self._open(subject, connection, record) if record is not None else None
        return (record, token) if record is not None and token is not None else None

    async def save(self, subject: str, connection: str, token: Mapping[str, Any]) -> None:
        """Keep `token` as the user's account at `connection` (replacing any earlier one)."""
        record = {
            "subject": subject,
            "connection": connection,
            "account": token.get("account"),
            "scopes": list(token.get("scopes") or ()),
            "connected_at": self._clock(),
            "x": self._sealed(subject, connection, token),
        }
        await self.store.commit(Commit().set(self._key_of(subject, connection), record))

    async def _rewrite(self, subject: str, connection: str, record: dict[str, Any], token: dict[str, Any]) -> None:
        updated = {**record, "scopes": list(token.get("scopes") or record.get("scopes") or ())}
        updated["x"] = self._sealed(subject, connection, token)
        await self.store.commit(Commit().set(self._key_of(subject, connection), updated))

    async def scopes(self, subject: str, connection: str) -> list[str]:
        """The scopes the user granted at `connection` (none if not connected)."""
        record = await self._record(subject, connection)
        return list(record.get("scopes") or ()) if record is not None else []

    def _account(self, record: dict[str, Any]) -> Account:
        """What the account pages show of a record."""
        name = str(record.get("connection"))
        provider = self.providers.get(name)
        return Account(
            connection=name,
            label=provider.label if provider else name,
            account=record.get("account"),
            scopes=tuple(record.get("scopes") or ()),
            connected_at=float(record.get("connected_at") or 0),
        )

    async def listed(self, subject: str) -> list[Account]:
        found = []
        for key in sorted(await self.store.keys(keys.connected_accounts(token_hash(subject)))):
            record = await self.store.get(key)
            if record is not None and record.get("subject") == subject:
                found.append(self._account(record))
        return found

    async def everyone(self) -> list[tuple[str, Account]]:
        """Every connected account, with its user (for administrators), by user then connection."""
        found = []
        for key in await self.store.keys(keys.kind_prefix(keys.CONNECTED)):
            record = await self.store.get(key)
            if record is not None and isinstance(record.get("subject"), str):
                found.append((record["subject"], self._account(record)))
        return sorted(found, key=lambda pair: (pair[0], pair[1].connection))

    async def disconnect(self, subject: str, connection: str) -> bool | None:
        """Forget the account, revoking its token at the provider first. None if it was not connected; else
        whether the provider confirmed the revocation."""
        record = await self._record(subject, connection)
        if record is None:
            return None
        token = self._open(subject, connection, record)
        provider = self.providers.get(connection)
        revoked = await provider.revoke(token) if provider is not None and token is not None else False
        await self.store.commit(Commit(delete=[self._key_of(subject, connection)]))
        return revoked

    # --- tokens for tools ----------------------------------------------------------------------------------
    async def token(self, subject: str, connection: str, scopes: list[str] | tuple[str, ...] = ()) -> str:
        """A usable access token of the user's at `connection` with `scopes`, renewed first if it expires within a
        minute. NotConnected if there is none (or too few scopes, or the provider will not renew it);
        ProviderUnreachable if it must be renewed and the provider cannot be asked now."""
        found = await self._opened(subject, connection)
        if found is None:
            raise NotConnected(connection)
        record, token = found
        if set(scopes) - set(record.get("scopes") or ()):
            raise NotConnected(connection)
        if not self._fresh(token):
            token = await self._renewed(subject, connection)
        return str(token["access_token"])

    def _fresh(self, token: Mapping[str, Any]) -> bool:
        expires_at = token.get("expires_at")
        return not isinstance(expires_at, int | float) or expires_at - EARLY_SECONDS > self._clock()

    async def _renewed(self, subject: str, connection: str) -> dict[str, Any]:
        """Renew the token: one renewal at a time per account across every instance on the store. The instance
        that creates the lease renews; the others look again until the renewed token appears, or take the lease
        once its holder let it go (or crashed and it expired)."""
        lock = self._renewing.setdefault((subject, connection), asyncio.Lock())
        async with lock:
            found = await self._opened(subject, connection)
            if found is None:
                raise NotConnected(connection)
            if self._fresh(found[1]):
                return found[1]  # renewed while we waited
            lease = keys.connect_lease(token_hash(subject), connection)
            deadline = self._clock() + LEASE_SECONDS + 2 * LEASE_POLL_SECONDS
            while not await self.store.commit(Commit().add(lease, {}, LEASE_SECONDS)):
                if self._clock() >= deadline:
                    raise ProviderUnreachable("the token is being renewed elsewhere; try again")
                await self._sleep(LEASE_POLL_SECONDS)
                found = await self._opened(subject, connection)
                if found is None:
                    raise NotConnected(connection)
                if self._fresh(found[1]):
                    return found[1]
            taken_at = self._clock()
            try:
                found = await self._opened(subject, connection)  # again, under the lease
                if found is None:
                    raise NotConnected(connection)
                if self._fresh(found[1]):
                    return found[1]
                return await self._renew(subject, connection, *found)
            finally:
                if self._clock() - taken_at < LEASE_SECONDS - 1:
                    with contextlib.suppress(StoreUnavailable):
                        await self.store.commit(Commit(consume=[lease]))

    async def _renew(
        self, subject: str, connection: str, record: dict[str, Any], token: dict[str, Any]
    ) -> dict[str, Any]:
        provider = self.providers.get(connection)
        if provider is None:
            raise NotConnected(connection)
        renewed = await provider.refresh({**token, "scopes": record.get("scopes"), "account": record.get("account")})
        if renewed is None:
            # The provider will not renew it (revoked there, or no refresh token): the user connects again.
            await self.store.commit(Commit(delete=[self._key_of(subject, connection)]))
            raise NotConnected(connection)
        await self._rewrite(subject, connection, record, renewed)
        return renewed
