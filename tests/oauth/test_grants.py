"""Grants, codes and tokens, rule by rule, against both store backends."""

import asyncio
import base64
import hashlib
import json

import pytest

from bastion.oauth.errors import OAuthError
from bastion.oauth.grants import Grants, Lifetimes
from bastion.store import MemoryStore, SQLiteStore, keys
from tests.waiting import eventually

RESOURCE = "http://127.0.0.1:8000/mcp"
REDIRECT = "http://127.0.0.1:3000/callback"
VERIFIER = "v" * 43 + "-._~0123"


def challenge(verifier: str = VERIFIER) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


@pytest.fixture(params=["memory", "sqlite"])
async def grants(request, tmp_path):
    store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "g.db")
    yield Grants(store, Lifetimes(code=300, access=3600, refresh=86400))
    await store.close()


async def new_code(grants: Grants, client_id: str = "c1", props: dict | None = None) -> str:
    return await grants.authorize(
        client_id=client_id,
        subject="dev:alice",
        scopes=["mcp", "notes"],
        resource=RESOURCE,
        redirect_uri=REDIRECT,
        code_challenge=challenge(),
        props=props or {"name": "Alice"},
    )


async def redeem(grants: Grants, code: str, **overrides):
    args = {"client_id": "c1", "redirect_uri": REDIRECT, "code_verifier": VERIFIER, "resource": RESOURCE}
    return await grants.exchange_code(code, **{**args, **overrides})


async def test_code_to_tokens_to_principal(grants):
    tokens = await redeem(grants, await new_code(grants))
    principal = await grants.verify(tokens.access_token, RESOURCE)
    assert principal.subject == "dev:alice" and principal.client_id == "c1"
    assert principal.scopes == {"mcp", "notes"} and principal.claims == {"name": "Alice"}
    assert await grants.verify(tokens.access_token, "http://other.example/mcp") is None  # audience-bound
    assert await grants.verify(tokens.access_token + "x", RESOURCE) is None


@pytest.mark.parametrize(
    "overrides",
    [
        {"code_verifier": None},
        {"code_verifier": "short"},
        {"code_verifier": "w" * 43},
        {"client_id": "c2"},
        {"redirect_uri": "http://127.0.0.1:3000/other"},
        {"redirect_uri": None},
        {"resource": "http://evil.example/mcp"},
    ],
)
async def test_every_binding_of_a_code_is_checked_and_a_failure_changes_nothing(grants, overrides):
    code = await new_code(grants)
    with pytest.raises(OAuthError) as caught:
        await redeem(grants, code, **overrides)
    assert caught.value.error == ("invalid_target" if "resource" in overrides else "invalid_grant")
    assert (await redeem(grants, code)).access_token  # the code still works for its rightful owner


async def test_a_replayed_code_revokes_what_it_issued(grants):
    code = await new_code(grants)
    tokens = await redeem(grants, code)
    with pytest.raises(OAuthError):
        await redeem(grants, code)
    assert await grants.verify(tokens.access_token, RESOURCE) is None
    with pytest.raises(OAuthError):
        await grants.refresh(tokens.refresh_token, client_id="c1", scopes=None, resource=None)


async def test_concurrent_redemptions_yield_at_most_one_token_set(grants):
    code = await new_code(grants)
    results = await asyncio.gather(*(redeem(grants, code) for _ in range(10)), return_exceptions=True)
    winners = [r for r in results if not isinstance(r, Exception)]
    assert len(winners) == 1
    assert all(isinstance(r, OAuthError) for r in results if r not in winners)
    # The losers' attempts were replays by the rightful client: what the winner got is revoked.
    assert await grants.verify(winners[0].access_token, RESOURCE) is None


async def test_refresh_rotates_and_reuse_revokes_the_grant(grants):
    first = await redeem(grants, await new_code(grants))
    second = await grants.refresh(first.refresh_token, client_id="c1", scopes=None, resource=None)
    assert second.refresh_token != first.refresh_token
    assert await grants.verify(second.access_token, RESOURCE) is not None
    with pytest.raises(OAuthError):  # the rotated token used again: theft, so the grant ends
        await grants.refresh(first.refresh_token, client_id="c1", scopes=None, resource=None)
    assert await grants.verify(second.access_token, RESOURCE) is None
    with pytest.raises(OAuthError):
        await grants.refresh(second.refresh_token, client_id="c1", scopes=None, resource=None)


async def test_refresh_can_only_narrow_scopes(grants):
    tokens = await redeem(grants, await new_code(grants))
    with pytest.raises(OAuthError) as caught:
        await grants.refresh(tokens.refresh_token, client_id="c1", scopes=["mcp", "admin"], resource=None)
    assert caught.value.error == "invalid_scope"
    narrowed = await grants.refresh(tokens.refresh_token, client_id="c1", scopes=["notes"], resource=None)
    assert (await grants.verify(narrowed.access_token, RESOURCE)).scopes == {"notes"}
    # The refresh token still carries the whole grant, so a later refresh can widen back to it.
    wide = await grants.refresh(narrowed.refresh_token, client_id="c1", scopes=None, resource=None)
    assert (await grants.verify(wide.access_token, RESOURCE)).scopes == {"mcp", "notes"}


async def test_refresh_by_another_client_changes_nothing(grants):
    tokens = await redeem(grants, await new_code(grants))
    with pytest.raises(OAuthError):
        await grants.refresh(tokens.refresh_token, client_id="c2", scopes=None, resource=None)
    assert await grants.refresh(tokens.refresh_token, client_id="c1", scopes=None, resource=None)


async def test_revocation_by_token(grants):
    tokens = await redeem(grants, await new_code(grants))
    await grants.revoke_token(tokens.access_token, "c2")  # another client's: nothing happens
    assert await grants.verify(tokens.access_token, RESOURCE) is not None
    await grants.revoke_token(tokens.access_token, "c1")
    assert await grants.verify(tokens.access_token, RESOURCE) is None
    second = await grants.refresh(tokens.refresh_token, client_id="c1", scopes=None, resource=None)
    await grants.revoke_token(second.refresh_token, "c1")  # a refresh token ends the whole grant
    assert await grants.verify(second.access_token, RESOURCE) is None
    await grants.revoke_token("not-a-token", "c1")


async def test_a_stolen_database_holds_no_token_and_no_readable_props(grants):
    secret_props = {"upstream_token": "gho_supersecretvalue"}
    tokens = await redeem(grants, await new_code(grants, props=secret_props))
    dump = json.dumps([await grants.store.get(k) for k in await grants.store.keys("")])
    for needle in (
        tokens.access_token,
        tokens.refresh_token,
        tokens.access_token.split(".")[1],
        "gho_supersecretvalue",
        "upstream_token",
    ):
        assert needle not in dump


class Upstream:
    """The identity providers' side of upstream tokens, answered by the test's functions."""

    def __init__(self, refresh=None, revoke=None) -> None:
        self._refresh, self._revoke = refresh, revoke

    async def refresh(self, provider, token):
        return await self._refresh(provider, token) if self._refresh else None

    async def revoke(self, provider, token):
        if self._revoke:
            await self._revoke(provider, token)


def with_upstream(grants: Grants, refresh=None, revoke=None) -> Grants:
    """The same store and lifetimes, with upstream tokens renewed and revoked by the given functions."""
    return Grants(grants.store, grants.lifetimes, upstream=Upstream(refresh, revoke))


async def test_upstream_tokens_are_renewed_once_for_concurrent_callers(grants):
    import time

    from bastion.principal import UpstreamError

    calls = []
    release = asyncio.Event()

    async def renew(provider, token):
        calls.append(token["refresh_token"])
        await release.wait()  # held until every caller has asked
        return {**token, "access_token": "fresh", "expires_at": time.time() + 3600}

    grants = with_upstream(grants, refresh=renew)
    expired = {"access_token": "stale", "refresh_token": "r1", "expires_at": time.time() - 5, "scopes": ["read"]}
    tokens = await redeem(grants, await new_code(grants, props={"upstream": {"corp": expired}}))
    principal = await grants.verify(tokens.access_token, RESOURCE)
    assert "stale" not in repr(principal)
    with pytest.raises(UpstreamError, match="expired"):
        principal.upstream_token("corp")
    callers = [asyncio.create_task(principal.fresh_upstream_token("corp", ["read"])) for _ in range(5)]

    async def asked() -> bool:
        return bool(calls)

    await eventually(asked, "the first caller renewing")
    for _ in range(20):  # every other caller runs up to where it waits (or, were renewals not shared, renews)
        await asyncio.sleep(0)
    assert calls == ["r1"] and not any(caller.done() for caller in callers)
    release.set()
    assert await asyncio.gather(*callers) == ["fresh"] * 5 and calls == ["r1"]
    # The renewed token is sealed back into the grant: the next verification sees it.
    again = await grants.verify(tokens.access_token, RESOURCE)
    assert again.upstream_token("corp") == "fresh"


async def test_an_upstream_token_that_cannot_be_renewed_asks_for_a_new_sign_in(grants):
    import time

    from bastion.principal import UpstreamError

    async def refuse(provider, token):
        return None

    grants = with_upstream(grants, refresh=refuse)
    expired = {"access_token": "stale", "refresh_token": "r1", "expires_at": time.time() - 5, "scopes": []}
    tokens = await redeem(grants, await new_code(grants, props={"upstream": {"corp": expired}}))
    principal = await grants.verify(tokens.access_token, RESOURCE)
    with pytest.raises(UpstreamError, match="sign in again"):
        await principal.fresh_upstream_token("corp")


async def test_ending_a_grant_revokes_its_upstream_tokens(grants):
    revoked = []

    async def revoke(provider, token):
        revoked.append((provider, token["access_token"]))

    grants = with_upstream(grants, revoke=revoke)
    upstream = {"corp": {"access_token": "up-at", "refresh_token": "up-rt", "expires_at": None, "scopes": []}}
    tokens = await redeem(grants, await new_code(grants, props={"upstream": upstream}))
    await grants.revoke_token(tokens.access_token, "c1")  # an access token ends only itself
    assert revoked == []
    await grants.revoke_token(tokens.refresh_token, "c1")
    assert revoked == [("corp", "up-at")]


def grant_of(token: str) -> str:
    return token.split(".")[0]


async def records_of(grants: Grants, grant_id: str) -> dict[str, dict]:
    """Every record a grant owns, by key (what a replay must leave alone, or a revocation remove).

    Any key naming the grant id between separators counts, not only those under keys.issued_under: a
    revocation that missed a kind must show here."""
    owned = [k for k in await grants.store.keys("") if k == keys.grant(grant_id) or f":{grant_id}:" in k]
    return {k: await grants.store.get(k) for k in sorted(owned)}


async def test_another_clients_replay_of_a_used_code_changes_nothing(grants):
    code = await new_code(grants)
    tokens = await redeem(grants, code)
    before = await records_of(grants, grant_of(code))
    assert [k.split(":")[0] for k in before] == ["access", "grant", "refresh", "usedcode"]
    with pytest.raises(OAuthError) as caught:
        await redeem(grants, code, client_id="c2")
    assert caught.value.error == "invalid_grant" and "already used" in caught.value.description
    assert await records_of(grants, grant_of(code)) == before
    assert await grants.verify(tokens.access_token, RESOURCE) is not None
    # The rightful client's replay still ends everything the code issued.
    with pytest.raises(OAuthError):
        await redeem(grants, code)
    assert await records_of(grants, grant_of(code)) == {}
    assert await grants.verify(tokens.access_token, RESOURCE) is None


async def test_another_clients_replay_of_a_rotated_refresh_token_changes_nothing(grants):
    first = await redeem(grants, await new_code(grants))
    second = await grants.refresh(first.refresh_token, client_id="c1", scopes=None, resource=None)
    before = await records_of(grants, grant_of(first.access_token))
    with pytest.raises(OAuthError) as caught:
        await grants.refresh(first.refresh_token, client_id="c2", scopes=None, resource=None)
    assert caught.value.error == "invalid_grant"
    assert await records_of(grants, grant_of(first.access_token)) == before
    assert await grants.verify(second.access_token, RESOURCE) is not None
    with pytest.raises(OAuthError):
        await grants.refresh(first.refresh_token, client_id="c1", scopes=None, resource=None)
    assert await records_of(grants, grant_of(first.access_token)) == {}
    assert await grants.verify(second.access_token, RESOURCE) is None


async def test_markers_name_the_client_and_older_empty_ones_still_revoke_on_any_replay(grants):
    from bastion.store import Commit

    code = await new_code(grants)
    tokens = await redeem(grants, code)
    [marker] = await grants.store.keys(keys.kind_prefix("usedcode"))
    assert await grants.store.get(marker) == {"client_id": "c1"}
    await grants.store.commit(Commit().set(marker, {}, 3600))  # as written before markers named their client
    with pytest.raises(OAuthError):
        await redeem(grants, code, client_id="c2")
    assert await records_of(grants, grant_of(code)) == {}
    assert await grants.verify(tokens.access_token, RESOURCE) is None


async def test_a_grant_revoked_during_an_upstream_renewal_stays_revoked(grants):
    import time

    from bastion.principal import UpstreamError

    started, revoked = asyncio.Event(), asyncio.Event()
    cleaned_up = []

    async def renew(provider, token):
        started.set()
        await revoked.wait()  # the provider answers only after the grant was revoked
        return {**token, "access_token": "fresh", "expires_at": time.time() + 3600}

    async def revoke_upstream(provider, token):
        cleaned_up.append(token["access_token"])

    grants = with_upstream(grants, refresh=renew, revoke=revoke_upstream)
    expired = {"access_token": "stale", "refresh_token": "r1", "expires_at": time.time() - 5, "scopes": []}
    tokens = await redeem(grants, await new_code(grants, props={"upstream": {"corp": expired}}))
    principal = await grants.verify(tokens.access_token, RESOURCE)
    tool = asyncio.create_task(principal.fresh_upstream_token("corp"))
    await started.wait()
    await grants.revoke_token(tokens.refresh_token, "c1")
    revoked.set()
    with pytest.raises(UpstreamError, match="expired"):
        await tool  # the tool gets no token
    assert await records_of(grants, grant_of(tokens.access_token)) == {}  # and the grant did not come back
    assert await grants.verify(tokens.access_token, RESOURCE) is None
    assert cleaned_up == ["stale", "fresh"]  # revoked with the grant, and the renewed one nobody holds


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_an_access_token_is_refused_once_its_lifetime_is_over(backend, tmp_path):
    import time

    from tests.clocks import Clock

    clock = Clock(time.time())
    store = MemoryStore(clock=clock) if backend == "memory" else SQLiteStore(tmp_path / "g.db", now=clock)
    grants = Grants(store, Lifetimes(code=300, access=3600, refresh=86400))
    try:
        tokens = await redeem(grants, await new_code(grants))
        clock.now += 3599
        assert (await grants.verify(tokens.access_token, RESOURCE)).subject == "dev:alice"
        clock.now += 1
        assert await grants.verify(tokens.access_token, RESOURCE) is None
        # The refresh token outlives it, and gets a new access token that works.
        renewed = await grants.refresh(tokens.refresh_token, client_id="c1", scopes=None, resource=None)
        assert (await grants.verify(renewed.access_token, RESOURCE)).subject == "dev:alice"
    finally:
        await store.close()
