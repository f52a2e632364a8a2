"""Tokens from an external authorization server: what is accepted, and every forgery that is not.

The issuer here is tests/jwt_issuer.py, a real HTTP server on 127.0.0.1 that will sign anything, so each test
can build exactly the hostile token it needs. Bastion runs in-process (ASGI) and fetches metadata, keys and
introspection answers from it over HTTP, as it would from Okta or Auth0.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time

import jwt
import pytest

from bastion.mcp.errors import FORBIDDEN
from bastion.resource.discovery import METADATA_SECONDS
from bastion.resource.jwks import KEYS_SECONDS, REFRESH_SECONDS
from bastion.worker.auth import mint as mint_worker_token
from tests.answers import bearer_challenge, jsonrpc_error
from tests.clients import asgi_client, local_settings
from tests.clocks import Clock
from tests.jwt_issuer import local_issuer
from tests.mcp.conftest import modern_body, modern_headers
from tests.resource.support import (
    BASE,
    RESOURCE,
    Behind,
    b64,
    call,
    gated,
    introspecting,
    issuer_app,
    present,
    refused,
    settings_for,
    signed_by_hand,
    unavailable,
    who,
)


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
async def bastion(issuer, request, ran):
    options = getattr(request, "param", {})
    async with asgi_client(issuer_app(ran), settings_for(issuer, **options)) as http:
        yield http


# --- what is accepted ------------------------------------------------------------------------------------
async def test_a_jwt_from_the_issuer_reaches_tools_with_its_principal(bastion, issuer):
    token = issuer.mint(issuer.claims(RESOURCE, scope="notes:read notes:write"))
    assert who(await call(bastion, token)) == {
        "subject": "corp:alice",
        "client": "client-1",
        "scopes": ["notes:read", "notes:write"],
    }
    assert (await call(bastion, token, "add_note", {"text": "hi"})).status_code == 200


async def test_ec_keys_and_an_audience_list_work_too(bastion, issuer):
    token = issuer.mint(issuer.claims(["https://other.example", RESOURCE]), alg="ES256", kid="ec-1")
    assert who(await call(bastion, token))["subject"] == "corp:alice"


async def test_keycloak_style_typ_jwt_is_an_access_token_too(bastion, issuer):
    assert who(await call(bastion, issuer.mint(issuer.claims(RESOURCE), typ="JWT")))["client"] == "client-1"


async def test_a_missing_scope_gets_the_step_up_challenge(bastion, issuer, ran):
    response = await call(bastion, issuer.mint(issuer.claims(RESOURCE)), "add_note", {"text": "hi"})
    assert bearer_challenge(response, 403, "insufficient_scope") == (
        f'Bearer error="insufficient_scope", scope="notes:write", '
        f'resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp"'
    )
    assert jsonrpc_error(response, 403, FORBIDDEN)["data"] == {"scopes": ["notes:write"]}
    assert ran == []


async def test_protected_resource_metadata_names_the_issuer(bastion, issuer):
    metadata = (await bastion.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert metadata["resource"] == RESOURCE
    assert metadata["authorization_servers"] == [issuer.issuer]
    assert metadata["scopes_supported"] == ["notes:write"]
    # Bastion's own authorization server is not running: none of its routes exist.
    absent = await bastion.get("/.well-known/oauth-authorization-server")
    assert absent.status_code == 404 and absent.text == "Not Found"


@pytest.mark.parametrize("bastion", [{"required_scopes": ["notes:read"]}], indirect=True)
async def test_required_scopes_are_asked_for_up_front_and_enforced(bastion, issuer, ran):
    anonymous = await bastion.post("/mcp", headers=modern_headers("tools/list"), json=modern_body("tools/list"))
    assert bearer_challenge(anonymous, 401) == (
        f'Bearer resource_metadata="{BASE}/.well-known/oauth-protected-resource/mcp", scope="notes:read"'
    )
    without = await call(bastion, issuer.mint(issuer.claims(RESOURCE, scope="profile")))
    assert 'scope="notes:read"' in bearer_challenge(without, 403, "insufficient_scope")
    assert ran == []
    assert who(await call(bastion, issuer.mint(issuer.claims(RESOURCE))))["scopes"] == ["notes:read"]
    # A tool's challenge names every scope the call needs, the required ones included.
    step_up = await call(bastion, issuer.mint(issuer.claims(RESOURCE)), "add_note", {"text": "x"})
    assert 'scope="notes:read notes:write"' in step_up.headers["www-authenticate"]


@pytest.mark.parametrize("bastion", [{"entry": {"audience": "api://bastion"}}], indirect=True)
async def test_a_configured_audience_replaces_the_resource_url(bastion, issuer):
    assert who(await call(bastion, issuer.mint(issuer.claims("api://bastion"))))["subject"] == "corp:alice"
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE))))


@pytest.mark.parametrize(
    ("preset", "claims", "expected"),
    [
        ("okta", {"scp": ["notes:read", "email"], "uid": "00u1ab2c", "cid": "0oa9", "client_id": None}, "00u1ab2c"),
        (
            "entra",
            {"scp": "notes:read", "roles": ["Notes.Admin"], "oid": "8f1e", "azp": "app", "client_id": None},
            "8f1e",
        ),
        ("auth0", {"scope": "openid", "permissions": ["notes:read"]}, "alice"),
    ],
)
async def test_presets_read_scopes_users_and_clients_where_each_provider_puts_them(issuer, preset, claims, expected):
    async with asgi_client(issuer_app(), settings_for(issuer, entry={"preset": preset})) as http:
        seen = who(await call(http, issuer.mint(issuer.claims(RESOURCE, **{"scope": None, **claims}))))
    assert seen["subject"] == f"corp:{expected}"
    assert "notes:read" in seen["scopes"]
    assert seen["client"] in ("0oa9", "app", "client-1")


# --- forgeries and near misses -----------------------------------------------------------------------------
async def test_alg_none_is_refused(bastion, issuer):
    claims = issuer.claims(RESOURCE)
    for alg in ("none", "None", "NONE"):
        refused(await call(bastion, f"{b64({'alg': alg, 'kid': 'rsa-1', 'typ': 'at+jwt'})}.{b64(claims)}."))
        refused(await call(bastion, f"{b64({'alg': alg, 'typ': 'at+jwt'})}.{b64(claims)}.c2ln"))


async def test_hmac_keyed_with_the_public_key_is_refused(bastion, issuer):
    # The classic algorithm confusion: HS256 "signed" with the RSA public key the verifier holds.
    claims = issuer.claims(RESOURCE)
    for kid in ("rsa-1", "oct-1", None):
        header = {"alg": "HS256", "typ": "at+jwt", **({"kid": kid} if kid else {})}
        signing_input = f"{b64(header)}.{b64(claims)}"
        for secret in (issuer.rsa_public_pem(), b"k" * 32):
            signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
            refused(await call(bastion, f"{signing_input}.{b64(signature)}"))


async def test_a_key_is_held_to_its_own_algorithm(bastion, issuer):
    # The RSA key is declared RS256: the same key signing PS256 is refused, and so is a kid/alg mismatch.
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE), alg="PS256")))
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE), alg="ES256", kid="rsa-1")))


@pytest.mark.parametrize(
    "audience", [None, "https://other.example/mcp", f"{RESOURCE}/", f"{BASE}/mcp-admin", [], ["x", "y"], 7]
)
async def test_a_wrong_or_missing_audience_is_refused(bastion, issuer, audience):
    claims = issuer.claims(RESOURCE)
    claims.pop("aud")
    if audience is not None:
        claims["aud"] = audience
    refused(await call(bastion, issuer.mint(claims)))


@pytest.mark.parametrize("twist", ["https://evil.example/{}", "{}.evil.example", "{}/", "{}/evil", " {}", "{}\u0000"])
async def test_an_issuer_with_anything_added_is_refused(bastion, issuer, twist):
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE, iss=twist.format(issuer.issuer)))))


async def test_time_claims(bastion, issuer):
    now = int(time.time())
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE, exp=now - 120))))  # expired
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE, exp=None))))  # no exp at all
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE, nbf=now + 300))))  # not yet valid
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE, iat=now + 300))))  # issued in the future
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE, exp="soon"))))
    # Small clock skew is tolerated.
    assert who(await call(bastion, issuer.mint(issuer.claims(RESOURCE, exp=now - 5, nbf=now + 5, iat=now + 5))))


async def test_crit_and_foreign_key_headers(bastion, issuer):
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE), crit=["exp"], exp=1)))
    # b64 is the one extension PyJWT understands; Bastion understands none, so even this is refused.
    refused(await call(bastion, signed_by_hand(issuer, {"crit": ["b64"], "b64": True}, issuer.claims(RESOURCE))))
    assert who(await call(bastion, signed_by_hand(issuer, {}, issuer.claims(RESOURCE))))  # the same, without crit
    # A token signed by the attacker's own key, pointing at it with jwk / jku / x5u: keys come only from the
    # issuer's JWK Set, so these headers change nothing and the signature does not verify.
    with local_issuer() as attacker:
        forged = issuer.claims(RESOURCE)
        public = jwt.algorithms.RSAAlgorithm.to_jwk(attacker.rsa_key.public_key(), as_dict=True)
        for header in ({"jwk": public}, {"jku": f"{attacker.issuer}/jwks"}, {"x5u": f"{attacker.issuer}/cert"}):
            refused(await call(bastion, attacker.mint(forged, **header)))
            refused(await call(bastion, attacker.mint(forged, kid=None, **header)))
        assert attacker.jwks_fetches == 0


async def test_other_kinds_of_token_are_refused(bastion, issuer):
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE), typ="logout+jwt")))
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE), typ="dpop+jwt")))
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE, cnf={"jkt": "abc"}))))  # sender-constrained
    refused(await call(bastion, issuer.mint(issuer.claims(RESOURCE, sub=None))))
    # A worker token (HS256, aud "worker") is not an MCP token.
    refused(await call(bastion, mint_worker_token("w" * 40, 60)))


async def test_a_tampered_signature_or_payload_is_refused(bastion, issuer):
    header, payload, signature = issuer.mint(issuer.claims(RESOURCE)).split(".")
    refused(await call(bastion, f"{header}.{payload}.{signature[:-4]}AAAA"))
    more = b64({**issuer.claims(RESOURCE), "scope": "notes:read notes:write"})
    refused(await call(bastion, f"{header}.{more}.{signature}"))


@pytest.mark.parametrize(
    "garbage",
    ["a.b.c", "..", "e30.e30.", "W10.e30.x", "e30.W10.x", "!!!.???.***", "eyJhbGciOiJSUzI1NiJ9.bm90IGpzb24.c2ln"],
)
async def test_malformed_tokens_are_refused_cleanly(bastion, garbage):
    refused(await call(bastion, garbage))


async def test_an_oversized_token_is_refused_unread(bastion, issuer, ran):
    fetches = issuer.jwks_fetches
    # Over the gate's 8 KB but within the request head's bound: the gate refuses it unparsed.
    big = issuer.mint(issuer.claims(RESOURCE, padding="x" * 12_000))
    response = await call(bastion, big)
    bearer_challenge(response, 400, "invalid_request")
    # Over the request head's bound: refused before the gate ever sees it.
    huge = await call(bastion, issuer.mint(issuer.claims(RESOURCE, padding="x" * 1_000_000)))
    assert huge.status_code == 431 and "www-authenticate" not in huge.headers
    assert issuer.jwks_fetches == fetches and ran == []


async def test_a_flood_of_unknown_kids_fetches_the_keys_once_per_refresh_pause(issuer):
    clock, behind = Clock(), Behind()
    async with gated(settings_for(issuer), clock, behind) as http:
        # A cold start under load: fifty different good tokens at once share one metadata and one key fetch.
        metadata_before, keys_before = issuer.metadata_fetches, issuer.jwks_fetches
        first = [issuer.mint(issuer.claims(RESOURCE, sub=f"user-{i}")) for i in range(50)]
        for answer in await asyncio.gather(*(present(http, token) for token in first)):
            assert answer.status_code == 200
        assert (issuer.metadata_fetches - metadata_before, issuer.jwks_fetches - keys_before) == (1, 1)
        assert len(behind.ran) == 50

        async def forge(wave: str, count: int) -> None:
            claims = issuer.claims(RESOURCE)
            forged = [issuer.mint(claims, kid=f"forged-{wave}-{i}") for i in range(count)]
            for answer in await asyncio.gather(*(present(http, token) for token in forged)):
                refused(answer)

        # The keys were fetched a moment ago: no unknown kid, however many arrive, fetches them again within
        # REFRESH_SECONDS, to its last half second.
        before, fetched_at = issuer.jwks_fetches, clock.now
        for elapsed in (0.0, 10.0, 20.0, REFRESH_SECONDS - 0.5):
            clock.now = fetched_at + elapsed
            await forge(str(elapsed), 100)
        assert issuer.jwks_fetches == before
        # Once the pause is over, an unknown kid may be a rotation: the keys are fetched again, exactly once for a
        # hundred such tokens at once, and then not again for another pause.
        clock.now = fetched_at + REFRESH_SECONDS
        await forge("after", 100)
        assert issuer.jwks_fetches == before + 1
        await forge("again", 100)
        assert issuer.jwks_fetches == before + 1
        assert (await present(http, issuer.mint(issuer.claims(RESOURCE)))).status_code == 200
        assert len(behind.ran) == 51 and issuer.metadata_fetches - metadata_before == 1


async def test_keys_and_metadata_are_fetched_again_after_an_hour_once(issuer):
    clock, behind = Clock(), Behind()
    async with gated(settings_for(issuer), clock, behind) as http:
        good = [issuer.mint(issuer.claims(RESOURCE, sub=f"user-{i}")) for i in range(20)]
        metadata_before, keys_before = issuer.metadata_fetches, issuer.jwks_fetches
        assert (await present(http, good[0])).status_code == 200
        clock.now += min(KEYS_SECONDS, METADATA_SECONDS) - 1  # within the hour: what was fetched is used
        assert (await present(http, good[1])).status_code == 200
        assert (issuer.metadata_fetches - metadata_before, issuer.jwks_fetches - keys_before) == (1, 1)
        clock.now += max(KEYS_SECONDS, METADATA_SECONDS) + 1
        for answer in await asyncio.gather(*(present(http, token) for token in good[2:])):
            assert answer.status_code == 200
        assert (issuer.metadata_fetches - metadata_before, issuer.jwks_fetches - keys_before) == (2, 2)
        assert len(behind.ran) == 20


# --- introspection and availability -------------------------------------------------------------------------
async def test_opaque_tokens_are_introspected(issuer, monkeypatch):
    now = int(time.time())
    live = {"active": True, "sub": "bob", "client_id": "c2", "scope": "notes:read", "aud": RESOURCE, "exp": now + 60}
    good = issuer.opaque({**live, "iss": issuer.issuer})
    cases = {
        issuer.opaque({**live, "active": False}): "inactive",
        issuer.opaque({**live, "aud": "https://other.example"}): "another audience",
        issuer.opaque({k: v for k, v in live.items() if k != "aud"}): "no audience",
        issuer.opaque({**live, "iss": issuer.issuer + "/"}): "another issuer",
        issuer.opaque({**live, "exp": now - 300}): "expired",
        issuer.opaque({**live, "token_type": "refresh_token"}): "a refresh token",
        issuer.opaque({**live, "active": "true"}): "active as a string",
        issuer.opaque({k: v for k, v in live.items() if k != "sub"}): "no subject",
        "never-issued-token": "unknown",
    }
    ran: list[str] = []
    async with asgi_client(issuer_app(ran), introspecting(issuer, monkeypatch)) as http:
        assert who(await call(http, good)) == {"subject": "corp:bob", "client": "c2", "scopes": ["notes:read"]}
        for token, why in cases.items():
            response = await call(http, token)
            assert response.status_code == 401, why
            refused(response)
    assert ran == ["who_am_i"]  # the good token's call only


async def test_an_unreachable_issuer_is_503_never_a_verdict(issuer, monkeypatch):
    issuer.down = True
    try:
        ran: list[str] = []
        async with asgi_client(issuer_app(ran), introspecting(issuer, monkeypatch)) as http:
            for token in (issuer.mint(issuer.claims(RESOURCE)), "some-opaque-token"):
                unavailable(await call(http, token))
        assert ran == []
    finally:
        issuer.down = False


async def test_metadata_naming_another_issuer_is_not_trusted(monkeypatch):
    with local_issuer(metadata_issuer="https://evil.example") as lying:
        ran: list[str] = []
        async with asgi_client(issuer_app(ran), settings_for(lying)) as http:
            unavailable(await call(http, lying.mint(lying.claims(RESOURCE))))
            assert lying.jwks_fetches == 0 and ran == []


async def test_bastions_own_tokens_and_an_external_issuers_work_side_by_side(issuer):
    from tests.oauth.conftest import register, tokens_for

    settings = local_settings(
        store={"backend": "memory"},
        authorization_server={"enabled": True, "dev_login": True},
        resource={"issuers": [{"name": "corp", "issuer": issuer.issuer}]},
    )
    async with asgi_client(issuer_app(), settings) as http:
        metadata = (await http.get("/.well-known/oauth-protected-resource/mcp")).json()
        assert metadata["authorization_servers"] == [BASE, issuer.issuer]
        own = (await tokens_for(http, await register(http)))["access_token"]
        assert who(await call(http, own))["subject"] == "dev:alice"
        assert who(await call(http, issuer.mint(issuer.claims(RESOURCE))))["subject"] == "corp:alice"


# --- fuzz ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("seed", [1, 2])
async def test_mutated_tokens_never_get_a_5xx(bastion, issuer, seed):
    """Seeded, bounded mutations of a valid token's header, claims and bytes: every answer is a clean refusal
    (or, when the mutation happened to change nothing that matters, a success)."""
    from tests.mcp.test_fuzz import WEIRD, mutate

    rng = random.Random(seed)
    header = {"alg": "RS256", "kid": "rsa-1", "typ": "at+jwt"}
    claims = issuer.claims(RESOURCE)
    signature = issuer.mint(claims).split(".")[2]
    for _ in range(150):
        kind = rng.random()
        if kind < 0.4:  # re-signed, so the claims checks themselves are what is tested
            try:
                token = issuer.mint(mutate(claims, rng), kid="rsa-1")
            except (TypeError, ValueError, OverflowError):
                continue
        elif kind < 0.7:  # a mutated header over the original signature
            mutated = mutate(header, rng)
            segment = b64(mutated) if isinstance(mutated, dict) else b64(json.dumps(rng.choice(WEIRD)).encode())
            token = f"{segment}.{b64(claims)}.{signature}"
        else:  # bytes flipped anywhere
            chars = list(issuer.mint(claims))
            for _ in range(rng.randint(1, 5)):
                chars[rng.randrange(len(chars))] = rng.choice("AZaz09-_.=+/ \t%")
            token = "".join(chars).strip()
        response = await call(bastion, token)
        assert response.status_code in (200, 400, 401, 403), (response.status_code, token)
        if response.status_code != 200:  # every refusal is a Bearer challenge naming its error
            error = {400: "invalid_request", 401: "invalid_token", 403: "insufficient_scope"}[response.status_code]
            bearer_challenge(response, response.status_code, error)
    assert who(await call(bastion, issuer.mint(claims)))["subject"] == "corp:alice"
