"""What an administrator can see and do on the store: clients and grants, listed, shown, revoked, deleted.

One object for every front (the `bastion admin` command, the admin page and API, a person's connected
applications page), so that each action means the same wherever it
is asked for: revoking a grant ends it everywhere (the grants' own revocation, told on the bus, so running
instances drop what they remembered of its tokens at once), and every action is an audit event naming who
asked (`by`). Nothing here shows a secret: grants' sealed properties and clients' secret hashes stay out.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..connections.accounts import ConnectedAccounts
from ..oauth.clients import Client
from ..oauth.grants import Grants
from ..ops.audit import AuditEvent
from ..store import Commit, Store, keys

CLIENT_FIELDS = ("client_id", "client_name", "token_endpoint_auth_method", "redirect_uris", "issued_at", "expires_at")
GRANT_FIELDS = ("grant_id", "subject", "client_id", "scopes", "resource", "created_at")


class Administration:
    def __init__(
        self,
        store: Store,
        grants: Grants,
        audit: Callable[[AuditEvent], None] | None = None,
        connected: ConnectedAccounts | None = None,
    ) -> None:
        self.store = store
        self.grants = grants
        self.audit = audit
        self.connected = connected  # users' connected accounts ([[connections]]), when any is declared

    # --- clients ----------------------------------------------------------------------------------------
    async def clients(self) -> list[dict[str, Any]]:
        found = []
        for name in await self.store.keys(keys.kind_prefix(keys.CLIENT)):
            record = await self.store.get(name)
            if record is not None:
                found.append(_client_view(Client.from_record(record)))
        return found

    async def client(self, client_id: str) -> dict[str, Any] | None:
        record = await self.store.get(keys.client(client_id))
        if record is None:
            return None
        view = _client_view(Client.from_record(record))
        view["grants"] = len(await self.grant_list(client_id=client_id))
        return view

    async def revoke_client(self, client_id: str, by: str) -> int | None:
        """Revoke every grant of the client, which stays registered (its users must authorize it again): how many
        grants ended, or None if it does not exist."""
        if await self.store.get(keys.client(client_id)) is None:
            return None
        ended = await self._revoke_all(client_id)
        self._record("admin.client.revoked", by, client_id=client_id, details={"grants_revoked": ended})
        return ended

    async def delete_client(self, client_id: str, by: str) -> int | None:
        """Revoke every grant of the client, then delete it: how many grants ended, or None if it does not exist."""
        if await self.store.get(keys.client(client_id)) is None:
            return None
        ended = await self._revoke_all(client_id)
        await self.store.commit(Commit(delete=[keys.client(client_id)]))
        self._record("admin.client.deleted", by, client_id=client_id, details={"grants_revoked": ended})
        return ended

    async def expire_clients(self, now: float) -> list[str]:
        """Remove every registration past its expiry, revoking its grants, each an audit event: the ids removed.
        Instances may sweep at once: whoever consumes a client's record is the one that reports it."""
        expired = []
        for client in await self.clients():
            expires_at = client["expires_at"]
            if expires_at is None or expires_at > now:
                continue
            if not await self.store.commit(Commit(consume=[keys.client(client["client_id"])])):
                continue  # another instance took it
            ended = await self._revoke_all(client["client_id"])
            if self.audit is not None:
                details = {"expired_at": expires_at, "grants_revoked": ended}
                self.audit(AuditEvent("client.expired", client_id=client["client_id"], details=details))
            expired.append(client["client_id"])
        return expired

    async def _revoke_all(self, client_id: str) -> int:
        ended = await self.grant_list(client_id=client_id)
        for grant in ended:
            await self.grants.revoke_grant(grant["grant_id"])
        return len(ended)

    # --- grants -----------------------------------------------------------------------------------------
    async def grant_list(self, subject: str | None = None, client_id: str | None = None) -> list[dict[str, Any]]:
        found = []
        prefix = keys.kind_prefix(keys.GRANT)
        for name in await self.store.keys(prefix):
            record = await self.store.get(name)
            if record is None:
                continue
            if (subject is None or record.get("subject") == subject) and (
                client_id is None or record.get("client_id") == client_id
            ):
                found.append(_grant_view(name.removeprefix(prefix), record))
        return found

    async def grant(self, grant_id: str) -> dict[str, Any] | None:
        try:
            record = await self.store.get(keys.grant(grant_id))
        except ValueError:  # not a grant id at all (a ":" in it)
            return None
        return _grant_view(grant_id, record) if record is not None else None

    async def last_token_at(self, grant_id: str) -> float | None:
        """When the grant last had an access token issued (its code redeemed, or a refresh): the "last used" a
        person sees. Access itself is not recorded: that would be a write on every call."""
        records = await self.store.get_many(await self.store.keys(keys.access_tokens(grant_id)))
        ends = [r["expires_at"] for r in records if r is not None and isinstance(r.get("expires_at"), int | float)]
        return max(ends) - self.grants.lifetimes.access if ends else None

    async def revoke_own(self, grant_id: str, subject: str) -> str | None:
        """A person ends one of their own grants (the connected applications page): the client it was for; None,
        with nothing changed, for a grant that is not theirs or does not exist."""
        found = await self.grant(grant_id)
        if found is None or found["subject"] != subject:
            return None
        await self.grants.revoke_grant(grant_id)
        if self.audit is not None:
            details = {"by": "user"}
            self.audit(
                AuditEvent(
                    "grant.revoked", subject=subject, client_id=found["client_id"], grant_id=grant_id, details=details
                )
            )
        return str(found["client_id"])

    async def revoke_grant(self, grant_id: str, by: str) -> bool:
        found = await self.grant(grant_id)
        if found is None:
            return False
        await self.grants.revoke_grant(grant_id)
        self._record(
            "admin.grant.revoked", by, subject=found["subject"], client_id=found["client_id"], grant_id=grant_id
        )
        return True

    # --- connected accounts ----------------------------------------------------------------------------------
    async def connected_accounts(self, subject: str | None = None) -> list[dict[str, Any]]:
        """Users' connected accounts (one user's, with `subject`): who, where, as whom there, what, since when.
        Never a token."""
        if self.connected is None:
            return []
        listed = (
            [(subject, account) for account in await self.connected.listed(subject)]
            if subject is not None
            else await self.connected.everyone()
        )
        return [
            {
                "subject": who,
                "connection": account.connection,
                "provider": account.label,
                "account": account.account,
                "scopes": list(account.scopes),
                "connected_at": account.connected_at,
            }
            for who, account in listed
        ]

    async def disconnect(self, subject: str, connection: str, by: str) -> bool | None:
        """Forget a user's connected account, revoking its token at the provider: None if there was none; else
        whether the provider confirmed the revocation."""
        if self.connected is None or connection not in self.connected:
            return None
        revoked = await self.connected.disconnect(subject, connection)
        if revoked is not None:
            details = {"connection": connection, "revoked_at_provider": revoked}
            self._record("connection.disconnected", by, subject=subject, details=details)
        return revoked

    def _record(self, what: str, by: str, **fields: Any) -> None:
        if self.audit is not None:
            details = {**fields.pop("details", {}), "by": by}
            self.audit(AuditEvent(what, **fields, details=details))


def _client_view(client: Client) -> dict[str, Any]:
    shown = {name: getattr(client, name) for name in CLIENT_FIELDS}
    shown["confidential"] = client.secret_hash is not None
    return shown


def _grant_view(grant_id: str, record: dict[str, Any]) -> dict[str, Any]:
    return {"grant_id": grant_id, **{name: record.get(name) for name in GRANT_FIELDS[1:]}}
