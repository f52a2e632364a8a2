"""Authorization transactions: what /authorize asked for, kept server-side until a code is issued or the
request ends. This module alone reads and writes their records (`store.keys.transaction`).

A transaction is opened by /authorize, shown and answered on the consent screen, handed to a sign-in method,
and completed when the user has signed in: the code is issued and the transaction consumed in one commit, so a
transaction yields at most one code, even when two callbacks race. Sign-in methods see only the narrow
`SignInDesk` interface: who the issuer is, what is pending, complete, or give up.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from ..ops.audit import AuditEvent, bind_request
from ..public_url import base_url
from ..security.crypto import new_token, token_hash
from ..store import Commit, Store, keys
from .client_redirects import consent_required, denied, redirect_with
from .pages import error_page

if TYPE_CHECKING:
    from ..account.sessions import AccountSessions
    from .approvals import Approvals
    from .grants import Grants

TRANSACTION_SECONDS = 600
CONSENT_PATH = "/consent"
ACCOUNT = "account"  # a transaction's purpose when it signs in to the account pages rather than for a client
EXPIRED = "This sign-in request has expired or was already used. Start again from the app."


class SignInDesk(Protocol):
    """What a sign-in method may do with the transaction it was handed."""

    def issuer(self, request: Request) -> str: ...

    async def pending(self, transaction: str) -> dict[str, Any] | None: ...

    async def complete(self, request: Request, transaction: str, subject: str, claims: dict[str, Any]) -> Response:
        """The user signed in as `subject`: issue the code and send the browser back to the application."""
        ...

    async def user_denied(self, transaction: str) -> Response:
        """The user refused at their identity provider: tell the application."""
        ...

    async def abandon(self, transaction: str) -> bool:
        """Sign-in failed: end the transaction. False if it had already ended."""
        ...


def consent_url(transaction: str) -> RedirectResponse:
    return RedirectResponse(f"{CONSENT_PATH}?transaction={transaction}", 302, headers={"Cache-Control": "no-store"})


class Transactions:
    def __init__(
        self,
        store: Store,
        grants: Grants,
        approvals: Approvals,
        public_url: str | None,
        seconds: int = TRANSACTION_SECONDS,
        clock: Callable[[], float] = time.time,
        audit: Callable[[AuditEvent], None] | None = None,
        accounts: AccountSessions | None = None,
    ) -> None:
        self.accounts = accounts  # where a sign-in to the account pages (not for a client) ends
        self.store = store
        self.audit = audit  # told of each sign-in that ends in a code
        self.grants = grants
        self.approvals = approvals
        self.public_url = public_url
        self.seconds = seconds
        self.clock = clock

    @staticmethod
    def _key(transaction: str) -> str:
        return keys.transaction(token_hash(transaction))

    def issuer(self, request: Request) -> str:
        return base_url(request.scope, self.public_url)

    def remaining(self, record: dict[str, Any]) -> float:
        """Seconds this transaction has left (at least one, so that a record is never written already dead)."""
        return max(1.0, float(record["created_at"]) + self.seconds - self.clock())

    # --- the life of a transaction ------------------------------------------------------------------------------
    async def open(self, record: dict[str, Any]) -> str:
        transaction = new_token()
        await self.store.commit(Commit().set(self._key(transaction), record, self.seconds))
        return transaction

    async def open_for_account(self, request: Request, return_to: str) -> str:
        """A sign-in to the account pages: no client, nothing to consent to; it ends in a browser session and
        back at `return_to` (a path of this server)."""
        record = {
            "purpose": ACCOUNT,
            "return_to": return_to,
            "redirect_uri": self.issuer(request) + return_to,  # where the sign-in pages' forms may lead
            "approved": True,
            "created_at": self.clock(),
        }
        return await self.open(record)

    async def pending(self, transaction: str) -> dict[str, Any] | None:
        return await self.store.get(self._key(transaction)) if transaction else None

    async def add_csrf(self, transaction: str, record: dict[str, Any], csrf_hash: str, keep: int) -> None:
        """Remember one more consent-form token (the newest `keep`) for this transaction."""
        record["csrf"] = [*record.get("csrf", []), csrf_hash][-keep:]
        await self.store.commit(Commit().set(self._key(transaction), record, self.remaining(record)))

    async def approve(self, transaction: str, record: dict[str, Any]) -> bool:
        """The user allowed it: mark it approved, once (False if it was answered already)."""
        key = self._key(transaction)
        approved = {**record, "approved": True, "csrf": []}
        return await self.store.commit(Commit(consume=[key]).set(key, approved, self.remaining(record)))

    async def abandon(self, transaction: str) -> bool:
        return bool(transaction) and await self.store.commit(Commit(consume=[self._key(transaction)]))

    async def user_denied(self, transaction: str) -> Response:
        record = await self.store.take(self._key(transaction)) if transaction else None
        if record is not None and record.get("purpose") == ACCOUNT:
            return error_page("Sign-in was cancelled.", 403)
        return denied(record) if record is not None else error_page(EXPIRED)

    async def complete(self, request: Request, transaction: str, subject: str, claims: dict[str, Any]) -> Response:
        if self.audit is not None:
            bind_request(request.scope)  # the sign-in's callback: its address and request id name the events
        key = self._key(transaction)
        record = await self.pending(transaction)
        if record is None:
            return error_page(EXPIRED)
        if record.get("purpose") == ACCOUNT:
            return await self._account_signed_in(key, record, subject, claims)
        if not record.get("approved") and record.get("remembered_subject") != subject:
            # Approved in this browser by someone else (or never): this user decides for themselves.
            if "none" in record.get("prompt", ()):
                if not await self.store.commit(Commit(consume=[key])):
                    return error_page(EXPIRED)
                return consent_required(record["redirect_uri"], record["state"], record["issuer"])
            retry = new_token()
            fresh = {**record, "remembered_subject": None, "approved": False, "csrf": [], "created_at": self.clock()}
            if not await self.store.commit(Commit(consume=[key]).set(self._key(retry), fresh, self.seconds)):
                return error_page(EXPIRED)
            return consent_url(retry)
        code, change = self.grants.new_authorization(
            client_id=record["client_id"],
            subject=subject,
            scopes=record["scopes"],
            resource=record["resource"],
            redirect_uri=record["redirect_uri"],
            code_challenge=record["code_challenge"],
            props=claims,
        )
        # The code exists only if this transaction was still open: one commit does both.
        change.consume.append(key)
        if not await self.store.commit(change):
            return error_page(EXPIRED)
        if self.audit is not None:
            method = claims.get("provider") if isinstance(claims.get("provider"), str) else None
            who = {"subject": subject, "client_id": record["client_id"], "grant_id": code.partition(".")[0]}
            self.audit(AuditEvent("signin.succeeded", **who, details={"method": method}))
            self.audit(AuditEvent("code.issued", **who))
        response = redirect_with(
            record["redirect_uri"], {"code": code, "state": record["state"], "iss": record["issuer"]}
        )
        response.headers.append(
            "Set-Cookie",
            self.approvals.remember(
                request.scope, record["client_id"], record["redirect_uri"], record["resource"], subject
            ),
        )
        return response

    async def _account_signed_in(
        self, key: str, record: dict[str, Any], subject: str, claims: dict[str, Any]
    ) -> Response:
        if self.accounts is None or not await self.store.commit(Commit(consume=[key])):
            return error_page(EXPIRED)
        method = claims.get("provider") if isinstance(claims.get("provider"), str) else None
        if self.audit is not None:
            self.audit(AuditEvent("signin.succeeded", subject=subject, details={"method": method, "to": ACCOUNT}))
        response = RedirectResponse(record["return_to"], 302, headers={"Cache-Control": "no-store"})
        response.headers.append("Set-Cookie", await self.accounts.open(subject, method))
        return response
