"""Every storage key, built here and nowhere else (docs/storage.md describes the same records, field by field).

  client:<client id>                      a registered client
  authz:<sha256(transaction)>             an authorization request in progress (transaction)
  upstream:<sha256(state)>                a sign-in in progress at an upstream identity provider
  grant:<grant id>                        one user's consent for one client to one resource
  code:<grant id>:<sha256(code)>          an authorization code
  usedcode:<grant id>:<sha256(code)>      a redeemed code: its replay revokes the grant
  access:<grant id>:<sha256(token)>       an access token
  refresh:<grant id>:<sha256(token)>      a refresh token
  rotated:<grant id>:<sha256(token)>      a refresh token used once: its reuse revokes the grant
  lease:<grant id>:<provider>             the instance renewing a grant's upstream token (expires by itself)
  ratelimit:<sha256(address)>:<window>:<n>  the n-th registration from one address in one window
  mcpsession:<sha256(session id)>         a legacy MCP session shared by every instance (what initialize agreed)
  mcprev:<sha256(session id)>:<n>         the session record's current revision (consumed to change it)
  mcpanswer:<sha256(session id)>:<sha256(request id)>  a client's answer, on its way to the instance that asked
  mcpstream:<sha256(session id)>:<stream>  how far one resumable SSE stream of a session has been written
  mcpevent:<sha256(session id)>:<stream>:<n>  the n-th event of that stream, for a client resuming elsewhere
  audittip:<chain>                        the audit chain's newest event: its number and hash
  auditrev:<chain>:<n>                    the chain's current length (consumed to append to it)
  audit:<chain>:<n, 12 digits>            the n-th audit event (numbers sort as text)
  account:<sha256(session id)>            a browser signed in to the account and admin pages
  connected:<sha256(subject)>:<connection>  a user's connected account: its token, sealed
  connlease:<sha256(subject)>:<connection>  the instance renewing a connected account's token (expires by itself)
  connlink:<sha256(link)>                 a link that lets one user connect one account, once
  connstate:<sha256(state)>               a connection in progress at the provider, by the hash of its `state`

These layouts are a compatibility contract: a database written by one version is read by the next, so changing
a layout orphans every record already stored under it (tests/store/test_keys.py pins each one).

Every record a grant issued sits under `<kind>:<grant id>:`, so revoking a grant is one commit deleting
`grant:<grant id>` and the prefixes from `issued_under`. The trailing separator keeps grants apart
("access:ab:" does not cover "access:abc:..."), which is why a grant id (and any part before the last) may not
contain ":". `kind_prefix` is the prefix listing every record of one kind.

A shared MCP session owns its records the same way, under `<kind>:<sha256(session id)>:` (`session_under`), so
ending it is one commit. `OWNED_KINDS` names every kind whose second part is its owner (a grant or a session):
a store that groups records by owner (Redis, one hash slot per owner) reads it from here.

Like the rest of store/, this module imports nothing of Bastion's: callers pass parts already hashed (with
security.crypto.token_hash), and no secret is ever given to a builder here.
"""

from __future__ import annotations

SEPARATOR = ":"

CLIENT = "client"
TRANSACTION = "authz"
UPSTREAM_STATE = "upstream"
GRANT = "grant"
CODE = "code"
USED_CODE = "usedcode"
ACCESS = "access"
REFRESH = "refresh"
ROTATED = "rotated"
UPSTREAM_LEASE = "lease"
RATE_LIMIT = "ratelimit"
MCP_SESSION = "mcpsession"
MCP_REVISION = "mcprev"
MCP_ANSWER = "mcpanswer"
MCP_STREAM = "mcpstream"
MCP_EVENT = "mcpevent"
AUDIT_TIP = "audittip"
AUDIT_REVISION = "auditrev"
AUDIT_EVENT = "audit"
ACCOUNT_SESSION = "account"
CONNECTED = "connected"
CONNECT_LEASE = "connlease"
CONNECT_LINK = "connlink"
CONNECT_STATE = "connstate"

# Kinds stored under a grant id, and so deleted with the grant.
ISSUED_KINDS = (ACCESS, REFRESH, CODE, ROTATED, USED_CODE)
# Kinds stored under a session's hash, and so deleted with the session.
SESSION_KINDS = (MCP_REVISION, MCP_ANSWER, MCP_STREAM, MCP_EVENT)
# Kinds of the audit trail, owned by their chain (one commit appends to one chain: one hash slot).
AUDIT_KINDS = (AUDIT_TIP, AUDIT_REVISION, AUDIT_EVENT)
# A user's connected accounts, owned by the subject's hash (listed, and each changed, in one place).
OWNED_KINDS = (GRANT, *ISSUED_KINDS, MCP_SESSION, *SESSION_KINDS, *AUDIT_KINDS, CONNECTED)
KINDS = (
    CLIENT,
    TRANSACTION,
    UPSTREAM_STATE,
    GRANT,
    *ISSUED_KINDS,
    UPSTREAM_LEASE,
    RATE_LIMIT,
    MCP_SESSION,
    *SESSION_KINDS,
    *AUDIT_KINDS,
    ACCOUNT_SESSION,
    CONNECTED,
    CONNECT_LEASE,
    CONNECT_LINK,
    CONNECT_STATE,
)


def _segment(value: str, what: str) -> str:
    # A separator inside a part would let one grant's prefix cover another's records.
    if not isinstance(value, str) or not value or SEPARATOR in value:
        raise ValueError(f"a {what} in a storage key must be a non-empty string without {SEPARATOR!r}")
    return value


def _last(value: str, what: str) -> str:
    """The last part of a key: any non-empty string (nothing follows it for a separator to confuse)."""
    if not isinstance(value, str) or not value:
        raise ValueError(f"a {what} in a storage key must be a non-empty string")
    return value


def _issued(kind: str, grant_id: str, hashed: str) -> str:
    return f"{kind}{SEPARATOR}{_segment(grant_id, 'grant id')}{SEPARATOR}{_segment(hashed, 'hash')}"


def client(client_id: str) -> str:
    """A registered client. The id is the last part (never a prefix), so it may be any non-empty string."""
    return f"{CLIENT}{SEPARATOR}{_last(client_id, 'client id')}"


def transaction(transaction_hash: str) -> str:
    """An authorization request between /authorize and the code, by the hash of its transaction id."""
    return f"{TRANSACTION}{SEPARATOR}{_segment(transaction_hash, 'hash')}"


def upstream_state(state_hash: str) -> str:
    """A sign-in in progress at an upstream identity provider, by the hash of its `state`."""
    return f"{UPSTREAM_STATE}{SEPARATOR}{_segment(state_hash, 'hash')}"


def grant(grant_id: str) -> str:
    return f"{GRANT}{SEPARATOR}{_segment(grant_id, 'grant id')}"


def code(grant_id: str, code_hash: str) -> str:
    return _issued(CODE, grant_id, code_hash)


def used_code(grant_id: str, code_hash: str) -> str:
    return _issued(USED_CODE, grant_id, code_hash)


def access_token(grant_id: str, token_hash: str) -> str:
    return _issued(ACCESS, grant_id, token_hash)


def refresh_token(grant_id: str, token_hash: str) -> str:
    return _issued(REFRESH, grant_id, token_hash)


def rotated_refresh(grant_id: str, token_hash: str) -> str:
    return _issued(ROTATED, grant_id, token_hash)


def upstream_lease(grant_id: str, provider: str) -> str:
    """Held by the one instance renewing a grant's token at `provider`. Not under the grant's prefixes: it is
    short-lived and expires by itself. The provider is the last part, so it may be any non-empty string."""
    return f"{UPSTREAM_LEASE}{SEPARATOR}{_segment(grant_id, 'grant id')}{SEPARATOR}{_last(provider, 'provider')}"


def rate_limit(address_hash: str, window: int, hit: int) -> str:
    """The `hit`-th (from 0) request counted against one client address in one fixed window (its number)."""
    _number(window, "window")
    _number(hit, "hit number")
    return f"{RATE_LIMIT}{SEPARATOR}{_segment(address_hash, 'hash')}{SEPARATOR}{window}{SEPARATOR}{hit}"


def mcp_session(session_hash: str) -> str:
    return f"{MCP_SESSION}{SEPARATOR}{_segment(session_hash, 'session hash')}"


def mcp_revision(session_hash: str, revision: int) -> str:
    _number(revision, "revision")
    return f"{MCP_REVISION}{SEPARATOR}{_segment(session_hash, 'session hash')}{SEPARATOR}{revision}"


def mcp_answer(session_hash: str, request_hash: str) -> str:
    return _issued(MCP_ANSWER, session_hash, request_hash)


def mcp_stream(session_hash: str, stream_id: str) -> str:
    return _issued(MCP_STREAM, session_hash, _segment(stream_id, "stream id"))


def mcp_event(session_hash: str, stream_id: str, seq: int) -> str:
    _number(seq, "event number")
    return f"{mcp_events(session_hash, stream_id)}{seq}"


def mcp_events(session_hash: str, stream_id: str) -> str:
    """The prefix of every event of one stream."""
    return f"{_issued(MCP_EVENT, session_hash, _segment(stream_id, 'stream id'))}{SEPARATOR}"


def session_under(session_hash: str) -> list[str]:
    """The prefixes covering every record a shared session owns besides its own (revision, answers, streams)."""
    return [f"{kind}{SEPARATOR}{_segment(session_hash, 'session hash')}{SEPARATOR}" for kind in SESSION_KINDS]


def audit_tip(chain: str) -> str:
    return f"{AUDIT_TIP}{SEPARATOR}{_segment(chain, 'audit chain')}"


def audit_revision(chain: str, length: int) -> str:
    _number(length, "audit chain length")
    return f"{AUDIT_REVISION}{SEPARATOR}{_segment(chain, 'audit chain')}{SEPARATOR}{length}"


def audit_event(chain: str, seq: int) -> str:
    _number(seq, "audit event number")
    return f"{audit_events(chain)}{seq:012d}"


def audit_events(chain: str) -> str:
    """The prefix of every event of one audit chain, which lists them in order."""
    return f"{AUDIT_EVENT}{SEPARATOR}{_segment(chain, 'audit chain')}{SEPARATOR}"


def account_session(session_hash: str) -> str:
    """A browser's sign-in to the account pages (connected applications, admin), by the hash of its cookie."""
    return f"{ACCOUNT_SESSION}{SEPARATOR}{_segment(session_hash, 'session hash')}"


def connected_account(subject_hash: str, connection: str) -> str:
    """A user's account at one connection ([[connections]] name, the last part)."""
    owner = _segment(subject_hash, "subject hash")
    return f"{CONNECTED}{SEPARATOR}{owner}{SEPARATOR}{_last(connection, 'connection')}"


def connected_accounts(subject_hash: str) -> str:
    """The prefix of every account one user connected."""
    return f"{CONNECTED}{SEPARATOR}{_segment(subject_hash, 'subject hash')}{SEPARATOR}"


def connect_lease(subject_hash: str, connection: str) -> str:
    """Held by the one instance renewing a connected account's token; short-lived, expires by itself."""
    owner = _segment(subject_hash, "subject hash")
    return f"{CONNECT_LEASE}{SEPARATOR}{owner}{SEPARATOR}{_last(connection, 'connection')}"


def connect_link(link_hash: str) -> str:
    """A link sent to a user (by URL elicitation) to connect an account, by the hash of its secret part."""
    return f"{CONNECT_LINK}{SEPARATOR}{_segment(link_hash, 'hash')}"


def connect_state(state_hash: str) -> str:
    """A connection in progress at a provider, by the hash of the `state` sent there."""
    return f"{CONNECT_STATE}{SEPARATOR}{_segment(state_hash, 'hash')}"


def _number(value: int, what: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"a {what} in a storage key must be a non-negative integer")


def kind_prefix(kind: str) -> str:
    """The prefix of every record of one kind, to list them (`Store.keys`); "grant" covers grants, not codes."""
    if kind not in KINDS:
        raise ValueError(f"no storage key kind {kind!r}")
    return f"{kind}{SEPARATOR}"


def access_tokens(grant_id: str) -> str:
    """The prefix of every access token a grant issued."""
    return f"{ACCESS}{SEPARATOR}{_segment(grant_id, 'grant id')}{SEPARATOR}"


def issued_under(grant_id: str) -> list[str]:
    """The prefixes covering every code, token and replay marker a grant issued (not the grant record itself)."""
    return [f"{kind}{SEPARATOR}{_segment(grant_id, 'grant id')}{SEPARATOR}" for kind in ISSUED_KINDS]
