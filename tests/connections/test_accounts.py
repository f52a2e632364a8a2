"""Connected accounts at rest and in use: tokens sealed (a store dump shows none, a record moved to another user
does not open), renewed once however many calls and instances need the renewed token at the same moment, and
forgotten when the provider will not renew them or the user disconnects."""

from __future__ import annotations

import asyncio

import pytest

from bastion.connections.accounts import ConnectedAccounts, accounts_key
from bastion.connections.provider import ConnectionProvider
from bastion.mcp.connect import NotConnected
from bastion.security.crypto import token_hash
from bastion.settings.connections import ConnectionSettings
from bastion.store import Commit, MemoryStore, keys
from tests.clocks import Clock
from tests.slack_mock import slack_entry, slack_server

SECRET_ENV = "BASTION_TEST_CONNECTION_SECRET"
KEY = accounts_key(b"x" * 32)


@pytest.fixture(autouse=True)
def _secret(monkeypatch):
    monkeypatch.setenv(SECRET_ENV, "s3cret")


def vault(store, base: str, clock: Clock, key: bytes = KEY) -> ConnectedAccounts:
    provider = ConnectionProvider(ConnectionSettings(**slack_entry(base, SECRET_ENV)), clock=clock)
    return ConnectedAccounts(store, {"slack": provider}, key, clock=clock)


async def connect(slack, accounts: ConnectedAccounts, subject: str, scope: str = "chat:write") -> dict:
    """The token a finished connect flow would keep (issued by the stand-in as at a real callback)."""
    issued = slack._issue("U0ADA", scope)
    token = {
        "access_token": issued["access_token"],
        "refresh_token": issued.get("refresh_token"),
        "expires_at": accounts._clock() + issued["expires_in"] if "expires_in" in issued else None,
        "scopes": scope.split(","),
        "account": "U0ADA in Acme",
    }
    await accounts.save(subject, "slack", token)
    return token


async def test_tokens_are_sealed_at_rest_and_bound_to_their_user():
    clock = Clock()
    store = MemoryStore(clock=clock)
    with slack_server("s3cret", rotation=True, clock=clock) as (slack, base):
        accounts = vault(store, base, clock)
        token = await connect(slack, accounts, "dev:ada")
        dump = repr({key: await store.get(key) for key in await store.keys("")})
        assert token["access_token"] not in dump and token["refresh_token"] not in dump
        assert "U0ADA in Acme" in dump and "chat:write" in dump  # what the account page shows is plain
        assert await accounts.token("dev:ada", "slack", ["chat:write"]) == token["access_token"]

        # Ada's record copied under Bob's key: the seal is bound to the key it was written under.
        record = await store.get(keys.connected_account(token_hash("dev:ada"), "slack"))
        forged = {**record, "subject": "dev:bob"}
        await store.commit(Commit().set(keys.connected_account(token_hash("dev:bob"), "slack"), forged))
        with pytest.raises(NotConnected):
            await accounts.token("dev:bob", "slack")
        # Under another state secret nothing opens either (as if the secret were rotated).
        with pytest.raises(NotConnected):
            await vault(store, base, clock, accounts_key(b"y" * 32)).token("dev:ada", "slack")
        with pytest.raises(NotConnected):  # more scope than granted: the user must connect again
            await accounts.token("dev:ada", "slack", ["chat:write", "files:write"])


async def test_an_expiring_token_is_renewed_once_for_every_caller_on_every_instance():
    clock = Clock()
    store = MemoryStore(clock=clock)
    with slack_server("s3cret", rotation=True, expires_in=3600, clock=clock) as (slack, base):
        one, two = vault(store, base, clock), vault(store, base, clock)  # two instances on one store
        old = await connect(slack, one, "dev:ada")
        clock.now += 3600 - 30  # inside the minute before expiry: renewed before use
        tokens = await asyncio.gather(*(instance.token("dev:ada", "slack") for instance in [one, two] * 10))
        assert slack.refreshes == 1
        assert len(set(tokens)) == 1 and tokens[0] != old["access_token"]
        assert await store.get(keys.connect_lease(token_hash("dev:ada"), "slack")) is None  # let go
        assert [a.connection for a in await one.listed("dev:ada")] == ["slack"]


async def test_a_token_the_provider_will_not_renew_is_forgotten():
    clock = Clock()
    store = MemoryStore(clock=clock)
    with slack_server("s3cret", rotation=True, expires_in=3600, clock=clock) as (slack, base):
        accounts = vault(store, base, clock)
        await connect(slack, accounts, "dev:ada")
        slack.refresh_tokens.clear()  # revoked at Slack meanwhile
        clock.now += 3600
        with pytest.raises(NotConnected):
            await accounts.token("dev:ada", "slack")
        assert await store.keys(keys.connected_accounts(token_hash("dev:ada"))) == []


async def test_disconnecting_revokes_at_the_provider_and_forgets():
    clock = Clock()
    store = MemoryStore(clock=clock)
    with slack_server("s3cret", clock=clock) as (slack, base):
        accounts = vault(store, base, clock)
        token = await connect(slack, accounts, "dev:ada")
        await connect(slack, accounts, "dev:bob")
        assert await accounts.disconnect("dev:ada", "slack") is True
        assert slack.revoked == [token["access_token"]]
        assert await accounts.disconnect("dev:ada", "slack") is None  # already gone
        assert [subject for subject, _ in await accounts.everyone()] == ["dev:bob"]
