"""/register (RFC 7591): metadata validated, ids and secrets generated, secrets hashed, rate-limited."""

import pytest

from bastion.security.crypto import token_hash
from bastion.store import keys
from tests.answers import oauth_error
from tests.clients import asgi_client, records
from tests.mcp.conftest import build_app

from .conftest import REDIRECT, authorize_params, settings, store_of
from .test_cimd import cimd, pki  # noqa: F401 - a client metadata document server, for the same rules there


@pytest.mark.parametrize(
    "uri",
    [
        "javascript:alert(1)",
        "JavaScript:alert(1)",
        " javascript:alert(1)",
        "java\tscript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "vbscript:msgbox(1)",
        "myapp://callback",
        "http://example.com/callback",  # plain http off loopback
        "https://example.com/cb#fragment",
        "https://user:pass@example.com/cb",
        "https://example.com/cb\r\nSet-Cookie: x=1",
        "https://exa mple.com/cb",
        "https://example.com/\u202ecb",
        "https:///no-host",
        "https://example.com:99999/cb",
        "https:\\\\example.com\\cb",
        "",
        "x" * 3000,
        42,
    ],
)
async def test_dangerous_redirect_uris_are_refused(oauth, uri):
    response = await oauth.post("/register", json={"redirect_uris": [uri]})
    oauth_error(response, 400, "invalid_redirect_uri")
    assert await records(oauth) == {}  # nothing registered


async def test_application_type_is_honoured(oauth):
    web_loopback = await oauth.post(
        "/register", json={"redirect_uris": ["http://127.0.0.1:3000/cb"], "application_type": "web"}
    )
    oauth_error(web_loopback, 400, "invalid_redirect_uri")
    assert await records(oauth) == {}
    native = await oauth.post(
        "/register",
        json={
            "redirect_uris": ["http://127.0.0.1:3000/cb"],
            "application_type": "native",
            "token_endpoint_auth_method": "none",
        },
    )
    assert native.status_code == 201 and native.json()["application_type"] == "native"
    web = await oauth.post("/register", json={"redirect_uris": ["https://app.example.com/cb"]})
    assert web.status_code == 201 and web.json()["application_type"] == "web"
    assert web.json()["token_endpoint_auth_method"] == "client_secret_basic"  # the RFC 7591 default


@pytest.mark.parametrize(
    "metadata",
    [
        {"redirect_uris": []},
        {},
        {"redirect_uris": "https://app.example.com/cb"},
        {"redirect_uris": ["https://app.example.com/cb"], "token_endpoint_auth_method": "private_key_jwt"},
        {"redirect_uris": ["https://app.example.com/cb"], "grant_types": ["client_credentials"]},
        {"redirect_uris": ["https://app.example.com/cb"], "grant_types": ["refresh_token"]},
        {"redirect_uris": ["https://app.example.com/cb"], "response_types": ["token"]},
        {"redirect_uris": ["https://app.example.com/cb"], "application_type": "desktop"},
        {"redirect_uris": ["https://app.example.com/cb"], "logo_uri": "javascript:alert(1)"},
        {"redirect_uris": ["https://app.example.com/cb"], "logo_uri": "http://app.example.com/logo.png"},
        {"redirect_uris": ["https://app.example.com/cb"], "client_uri": "data:text/html,hi"},
        {"redirect_uris": ["https://app.example.com/cb"], "client_name": "x" * 500},
        {"redirect_uris": ["https://app.example.com/cb"], "client_name": "evil\u0000name"},
        {"redirect_uris": ["https://app.example.com/cb"], "scope": "mcp admin"},
        {"redirect_uris": ["https://app.example.com/cb"] * 21},
    ],
)
async def test_bad_metadata_is_refused(oauth, metadata):
    response = await oauth.post("/register", json=metadata)
    # A missing, empty or mistyped redirect_uris, or too many, is about the redirect URIs; the rest about metadata.
    about_redirects = "redirect_uris" not in metadata or len(metadata["redirect_uris"]) in (0, 21)
    about_redirects = about_redirects or isinstance(metadata["redirect_uris"], str)
    oauth_error(response, 400, "invalid_redirect_uri" if about_redirects else "invalid_client_metadata")
    assert await records(oauth) == {}


async def test_ids_and_secrets_are_generated_and_secrets_stored_hashed(oauth):
    chosen = {
        "redirect_uris": ["https://app.example.com/cb"],
        "client_id": "i-choose-this",
        "client_secret": "and-this",
        "client_name": "<script>alert(1)</script>",
    }
    response = await oauth.post("/register", json=chosen)
    body = response.json()
    assert response.status_code == 201
    assert body["client_id"] != "i-choose-this" and body["client_secret"] != "and-this"
    assert len(body["client_id"]) >= 20 and len(body["client_secret"]) >= 40
    assert body["client_name"] == "<script>alert(1)</script>"  # stored as given; escaped wherever shown
    assert body["client_secret_expires_at"] > body["client_id_issued_at"]
    store = store_of(oauth)
    record = await store.get(keys.client(body["client_id"]))
    assert record["secret_hash"] == token_hash(body["client_secret"])
    assert body["client_secret"] not in str(record)


async def test_malformed_bodies(oauth):
    for content, content_type in [
        (b"{", "application/json"),
        (b"[]", "application/json"),
        (b"redirect_uris=x", "application/x-www-form-urlencoded"),
    ]:
        response = await oauth.post("/register", content=content, headers={"content-type": content_type})
        oauth_error(response, 400, "invalid_client_metadata")
    assert await records(oauth) == {}


async def test_registration_is_rate_limited_and_can_be_turned_off():
    async with asgi_client(build_app(), settings(registrations_per_minute=3)) as client:
        answers = [await client.post("/register", json={"redirect_uris": ["https://a.example/cb"]}) for _ in range(5)]
        assert [a.status_code for a in answers] == [201, 201, 201, 429, 429]
        for refused in answers[3:]:
            assert "try again" in oauth_error(refused, 429, "temporarily_unavailable")["error_description"]
            assert 1 <= int(refused.headers["retry-after"]) <= 60  # the rest of the minute (test_rate_limit.py)
        assert len(await records(client, keys.kind_prefix("client"))) == 3  # the refused ones registered nothing
    async with asgi_client(build_app(), settings(registration=False)) as client:
        closed = await client.post("/register", json={"redirect_uris": ["https://a.example/cb"]})
        assert closed.status_code == 404 and await records(client) == {}
        metadata = (await client.get("/.well-known/oauth-authorization-server")).json()
        assert "registration_endpoint" not in metadata


WILDCARD_HOSTS = [
    "https://*.example.com/cb",
    "https://*/cb",
    "https://app.*.example.com/cb",
    "https://app*.example.com/cb",
    "https://app.example.*/cb",
    "https://%2a.example.com/cb",
    "https://%2A.example.com/cb",
    "https://app%2Eexample.com/cb",
    "https://%252a.example.com/cb",
    "https://*.example.com:8443/cb",
    "http://*.localhost:3000/cb",
    "http://*:3000/cb",
    "https://[*]/cb",
    "https://[::1%25eth0]/cb",
    "https://app!.example.com/cb",
    "https://app..example.com/cb",
]


@pytest.mark.parametrize("uri", WILDCARD_HOSTS)
async def test_wildcard_and_encoded_hosts_are_refused_and_nothing_is_registered(oauth, uri):
    store = store_of(oauth)
    before = await store.keys(keys.kind_prefix("client"))
    response = await oauth.post(
        "/register", json={"redirect_uris": ["https://app.example.com/cb", uri], "application_type": "native"}
    )
    oauth_error(response, 400, "invalid_redirect_uri")
    assert "wildcards" in response.json()["error_description"] or "valid URL" in response.json()["error_description"]
    assert await store.keys(keys.kind_prefix("client")) == before


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example.com/cb",
        "https://app-1.example_host.example.com./cb",
        "https://APP.Example.com/cb/*",  # a star in the path is just a path
        "https://192.0.2.7:8443/cb",
        "https://[2001:db8::1]/cb",
        "http://[::1]:3000/cb",
        "http://localhost/cb",
    ],
)
async def test_plain_hosts_are_accepted(oauth, uri):
    response = await oauth.post(
        "/register", json={"redirect_uris": [uri], "application_type": "native", "token_endpoint_auth_method": "none"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["redirect_uris"] == [uri]


def document(url: str, other_redirect: str) -> dict:
    return {"client_id": url, "redirect_uris": [REDIRECT, other_redirect], "application_type": "native"}


async def test_a_metadata_document_with_a_wildcard_redirect_is_refused(cimd, caplog):  # noqa: F811
    caplog.set_level("INFO")
    client, documents = cimd
    tame = documents.url("/tame.json")
    documents.serve_document("/tame.json", document(tame, "https://x.example.com/cb"))
    assert (await client.get("/authorize", params=authorize_params(tame))).status_code == 302
    wild = documents.url("/wild.json")
    documents.serve_document("/wild.json", document(wild, "https://*.example.com/cb"))
    response = await client.get("/authorize", params=authorize_params(wild))
    assert response.status_code == 400 and "location" not in response.headers
    assert "wildcards" in response.text + caplog.text  # the reason: on the page, or only in the log
