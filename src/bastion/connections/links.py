"""Connect links: what a tool asks a user to connect, behind a random link sent to the client by URL elicitation.

The link holds 256 random bits; the store keeps only its hash (`connlink:<sha256(link)>`) for at most ten
minutes. Opening it changes nothing; going on to the provider consumes it, in one atomic take, so it serves
once. Who may use it is the subject it was made for, proved by the browser's own sign-in (pages.py): a link
forwarded to someone else is refused there, whoever follows it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass

from ..security.crypto import new_token, token_hash
from ..store import Commit, Store, keys

LINK_SECONDS = 600
PATH = "/connections/link"
_LINK = re.compile(r"^[A-Za-z0-9_-]{32,64}$")


@dataclass(frozen=True)
class ConnectRequest:
    subject: str
    client_id: str
    connection: str
    scopes: tuple[str, ...]  # everything to ask the provider for (what the user granted before, and more)
    tool: str
    method: str  # how the subject signs in (the prefix of their subject)
    elicitation_id: str


def is_link(value: str) -> bool:
    return bool(_LINK.match(value))


class ConnectLinks:
    def __init__(self, store: Store, seconds: int = LINK_SECONDS) -> None:
        self.store = store
        self.seconds = seconds

    async def create(self, request: ConnectRequest) -> str:
        link = new_token()
        record = {**asdict(request), "scopes": list(request.scopes)}
        await self.store.commit(Commit().set(keys.connect_link(token_hash(link)), record, self.seconds))
        return link

    async def find(self, link: str) -> ConnectRequest | None:
        """What the link asks, if it is live (it stays so)."""
        if not is_link(link):
            return None
        return _request(await self.store.get(keys.connect_link(token_hash(link))))

    async def take(self, link: str) -> ConnectRequest | None:
        """What the link asks, consumed: a second take of the same link finds nothing."""
        if not is_link(link):
            return None
        return _request(await self.store.take(keys.connect_link(token_hash(link))))


def _request(record: dict[str, object] | None) -> ConnectRequest | None:
    if record is None:
        return None
    scopes = record.get("scopes")
    return ConnectRequest(
        subject=str(record["subject"]),
        client_id=str(record["client_id"]),
        connection=str(record["connection"]),
        scopes=tuple(str(s) for s in scopes) if isinstance(scopes, list) else (),
        tool=str(record.get("tool") or ""),
        method=str(record.get("method") or ""),
        elicitation_id=str(record.get("elicitation_id") or ""),
    )
