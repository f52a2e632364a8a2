"""Client ID Metadata Documents at /authorize and /token: fetched safely, validated strictly, cached politely;
the page says only that the document could not be used, the log says why."""

import logging
import socket

import httpx
import pytest

from bastion.oauth.cimd import PUBLIC_MESSAGE
from bastion.security.fetch import SafeFetcher
from bastion.store import keys
from tests.clients import asgi_client, records
from tests.mcp.conftest import build_app
from tests.security.test_fetch import pki  # noqa: F401 - the throwaway CA and cimd.test certificate
from tests.tls_documents import Reply, document_server

from .conftest import REDIRECT, authorize_params, code_exchange, query_of, settings, sign_in


@pytest.fixture
async def cimd(pki):  # noqa: F811
    async with document_server(pki) as documents:
        trusting = settings(
            metadata_document_ca_file=str(pki["ca"]), metadata_document_hosts={"cimd.test": "127.0.0.1"}
        )
        async with asgi_client(build_app(), trusting) as client:
            yield client, documents


LOOPBACK_WARNING = "Any program running on this computer could claim to be cimd.test"


def refused(response: httpx.Response) -> None:
    """The clean page for an unusable document: 400, no redirect, the same message whatever the cause."""
    assert response.status_code == 400 and "location" not in response.headers
    assert PUBLIC_MESSAGE.replace("'", "&#39;") in response.text


async def pending(client: httpx.AsyncClient) -> dict:
    """The authorization transactions waiting: a refused /authorize must have started none."""
    return await records(client, keys.kind_prefix(keys.TRANSACTION))


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "bastion.oauth")


async def test_a_document_url_is_a_client_id(cimd):
    client, documents = cimd
    client_id = documents.serve_document("/app/client.json")
    start = await client.get("/authorize", params=authorize_params(client_id))
    page = await client.get(start.headers["location"])
    assert "Verified: cimd.test" in page.text and "Unverified application" not in page.text
    # Its only redirect URI is on loopback, where any local program can listen: the page says so.
    assert LOOPBACK_WARNING in page.text
    back = query_of(await sign_in(client, authorize_params(client_id)))
    tokens = await client.post("/token", data=code_exchange(back["code"], client_id, resource=None))
    assert tokens.status_code == 200, tokens.text


EC_PUBLIC = {
    "kty": "EC",
    "crv": "P-256",
    "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU",
    "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0",
}
RSA_PUBLIC = {"kty": "RSA", "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1R", "e": "AQAB"}
PRIVATE = "may contain public keys only"


@pytest.mark.parametrize(
    "fields, reason",
    [
        ({"client_id": "https://cimd.test/someone-else.json"}, "client_id is not the URL"),
        ({"client_secret": "s3cret"}, "must not contain a client secret"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "use token_endpoint_auth_method none"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "must use https"),
        ({"redirect_uris": []}, "redirect_uris must list"),
        ({"jwks": {"keys": [{**EC_PUBLIC, "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}}, PRIVATE),
        ({"jwks": {"keys": [{**RSA_PUBLIC, "p": "x", "q": "y"}]}}, PRIVATE),
        ({"jwks": {"keys": [{**RSA_PUBLIC, "dp": "x"}]}}, PRIVATE),
        ({"jwks": {"keys": [{**RSA_PUBLIC, "dq": "x"}]}}, PRIVATE),
        ({"jwks": {"keys": [{**RSA_PUBLIC, "qi": "x"}]}}, PRIVATE),
        ({"jwks": {"keys": [EC_PUBLIC, {"kty": "oct", "k": "c2VjcmV0"}]}}, "symmetric (oct)"),
        ({"jwks": {"keys": [{"kty": "oct"}]}}, "symmetric (oct)"),
        ({"jwks": {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "a", "d": "b"}]}}, PRIVATE),
        ({"jwks": [EC_PUBLIC]}, "JWK Set"),
        ({"jwks": {"keys": [EC_PUBLIC]}, "jwks_uri": "https://cimd.test/jwks.json"}, "not both"),
    ],
)
async def test_documents_must_name_themselves_and_hold_no_secrets(cimd, caplog, fields, reason):
    caplog.set_level(logging.INFO, logger="bastion.oauth")
    client, documents = cimd
    url = documents.url("/bad.json")
    document = {"client_id": url, "redirect_uris": [REDIRECT], **fields}
    documents.serve_document("/bad.json", document)
    response = await client.get("/authorize", params=authorize_params(url))
    refused(response)
    assert await pending(client) == {}
    assert reason not in response.text and "s3cret" not in response.text  # the why is for the log only
    assert reason in logged(caplog) and "s3cret" not in logged(caplog)
    assert documents.hits == {"/bad.json": 1}


async def test_a_document_with_public_keys_only_is_fine(cimd):
    client, documents = cimd
    client_id = documents.serve_document("/keys.json", jwks={"keys": [EC_PUBLIC, RSA_PUBLIC]})
    start = await client.get("/authorize", params=authorize_params(client_id))
    assert start.status_code == 302 and start.headers["location"].startswith("/consent?")


@pytest.mark.parametrize(
    "reply, reason",
    [
        (Reply(302, b"", {"Location": "https://cimd.test/elsewhere.json"}), "redirect refused (status 302)"),
        (Reply(200, b"{" + b'"a":"' + b"x" * 6000 + b'"}', {"Content-Type": "application/json"}), "larger than"),
        (Reply(200, b"not json", {}), "not JSON"),
        (Reply(404, b"", {}), "unexpected status 404"),
    ],
)
async def test_unusable_fetches_are_refused(cimd, caplog, reply, reason):
    caplog.set_level(logging.INFO, logger="bastion.oauth")
    client, documents = cimd
    documents.routes["/x.json"] = reply
    response = await client.get("/authorize", params=authorize_params(documents.url("/x.json")))
    refused(response)
    assert await pending(client) == {}
    for word in ("redirect", "status", "404", "large", "JSON"):
        assert word not in response.text
    assert reason in logged(caplog) and documents.url("/x.json") in logged(caplog)


@pytest.mark.parametrize(
    "client_id, reason",
    [
        ("https://127.0.0.1/client.json", "127.0.0.1 is a forbidden address"),
        ("https://169.254.169.254/latest/meta-data/client.json", "169.254.169.254 is a forbidden address"),
        ("https://[::ffff:127.0.0.1]/client.json", "forbidden address"),
        ("https://localhost/client.json", "URL names localhost"),
        ("https://10.0.0.1/client.json", "10.0.0.1 is a forbidden address"),
        ("https://cimd.test/", "needs a path"),
        ("https://user@cimd.test/client.json", "user information"),
    ],
)
async def test_ssrf_targets_are_refused_and_only_the_log_says_why(cimd, caplog, client_id, reason):
    caplog.set_level(logging.INFO, logger="bastion.oauth")
    client, _ = cimd
    response = await client.get("/authorize", params=authorize_params(client_id))
    refused(response)
    assert await pending(client) == {}
    assert "forbidden" not in response.text and "localhost" not in response.text
    assert reason in logged(caplog)


async def test_a_token_request_with_an_unusable_document_says_no_more(cimd, caplog):
    caplog.set_level(logging.INFO, logger="bastion.oauth")
    client, _ = cimd
    response = await client.post(
        "/token",
        data={"grant_type": "authorization_code", "code": "x", "client_id": "https://10.0.0.1/client.json"},
    )
    assert response.status_code == 401 and response.json()["error"] == "invalid_client"
    assert "10.0.0.1" not in response.text and "forbidden" not in response.text
    assert "10.0.0.1 is a forbidden address" in logged(caplog)


async def test_a_failed_lookup_is_not_shown(cimd, caplog):
    caplog.set_level(logging.INFO, logger="bastion.oauth")
    client, _ = cimd

    def no_such_name(host: str) -> list[str]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    app = client._transport.app
    while not hasattr(app, "router"):  # under whatever middleware wraps it
        app = app.app
    authorization = next(r.endpoint.__self__ for r in app.router.routes if getattr(r, "path", "") == "/authorize")
    authorization.documents.fetcher = SafeFetcher(resolver=no_such_name)  # no real DNS from tests
    response = await client.get("/authorize", params=authorize_params("https://nowhere.invalid/client.json"))
    refused(response)
    assert "resolve" not in response.text and "nowhere.invalid" not in response.text
    assert "could not resolve nowhere.invalid" in logged(caplog)


@pytest.mark.parametrize(
    "path",
    [
        "/a/../client.json",
        "/a/./client.json",
        "/a/%2e%2e/client.json",
        "/a/%2E%2E/client.json",
        "/a/%2e%2E/client.json",
        "/a/.%2e/client.json",
        "/a/%2e./client.json",
        "/a/%2e/client.json",
        "/a/%2E/client.json",
        "/a/%252e%252e/client.json",
        "/a/..;x/client.json",
        "/a/%2e%2e;x/client.json",
        "/a%2f..%2fclient.json",
        "/a%2F..%2Fclient.json",
        "/a%5c..%5cclient.json",
        "/a%252f..%252fclient.json",
        "/..",
        "/%2e%2e",
    ],
)
async def test_dot_segments_however_spelled_are_refused_before_any_fetch(cimd, caplog, path):
    caplog.set_level(logging.INFO, logger="bastion.oauth")
    client, documents = cimd
    documents.serve_document("/client.json")  # where a server that normalises the path would land
    response = await client.get("/authorize", params=authorize_params(documents.url(path)))
    refused(response)
    assert documents.hits == {} and await pending(client) == {}  # nothing was fetched, nothing started
    assert "dot segments" in logged(caplog) or "encoded slash" in logged(caplog)


@pytest.mark.parametrize("path", ["/v1.0/client.json", "/a..b/client.json", "/.well-known/client.json", "/a%20b.json"])
async def test_dots_that_are_not_segments_are_fine(cimd, path):
    client, documents = cimd
    client_id = documents.serve_document(path)
    start = await client.get("/authorize", params=authorize_params(client_id))
    assert start.status_code == 302, start.text
    assert documents.hits == {path: 1}


async def test_failures_are_not_cached_and_successes_follow_cache_control(cimd):
    client, documents = cimd
    url = documents.url("/cached.json")
    documents.routes["/cached.json"] = Reply(500, b"", {})
    refused(await client.get("/authorize", params=authorize_params(url)))
    documents.serve_document("/cached.json", cache="max-age=300")
    assert (await client.get("/authorize", params=authorize_params(url))).status_code == 302
    documents.serve_document("/cached.json", {"client_id": url, "redirect_uris": ["https://changed.example/cb"]})
    # Still the cached document (max-age=300): the old redirect URI is still the registered one.
    assert (await client.get("/authorize", params=authorize_params(url))).status_code == 302
    assert documents.hits["/cached.json"] == 2

    fresh = documents.url("/fresh.json")
    documents.serve_document("/fresh.json", cache="no-store")
    for _ in range(2):
        assert (await client.get("/authorize", params=authorize_params(fresh))).status_code == 302
    assert documents.hits["/fresh.json"] == 2


async def test_documents_can_be_turned_off():
    async with asgi_client(build_app(), settings(client_metadata_documents=False)) as client:
        response = await client.get("/authorize", params=authorize_params("https://cimd.test/client.json"))
        assert response.status_code == 400 and "location" not in response.headers
        assert "(unknown client_id)" in response.text  # not fetched: an unknown client like any other
        assert (await client.get("/.well-known/oauth-authorization-server")).json()[
            "client_id_metadata_document_supported"
        ] is False


# --- how far the consent screen vouches for a verified client -------------------------------------------------------

OTHER_ORIGIN = "which is not cimd.test"


async def consent_page(client: httpx.AsyncClient, client_id: str, redirect_uri: str) -> httpx.Response:
    start = await client.get("/authorize", params=authorize_params(client_id, redirect_uri=redirect_uri))
    assert start.status_code == 302 and start.headers["location"].startswith("/consent?"), start.text
    page = await client.get(start.headers["location"])
    assert page.status_code == 200 and "Verified: cimd.test" in page.text
    assert "<script" not in page.text and "script-src" not in page.headers["content-security-policy"].replace(
        "script-src 'none'", ""
    )
    return page


async def test_a_redirect_on_the_client_ids_own_origin_gets_no_warning(cimd):
    client, documents = cimd
    redirect = documents.url("/callback")
    client_id = documents.serve_document("/web.json", redirect_uris=[redirect])
    page = await consent_page(client, client_id, redirect)
    assert LOOPBACK_WARNING not in page.text and OTHER_ORIGIN not in page.text
    assert 'class="warning"' not in page.text


@pytest.mark.parametrize(
    "redirect",
    ["http://127.0.0.1:3000/callback", "http://localhost:4000/cb", "http://[::1]:5000/cb", "http://127.0.0.1/cb"],
)
async def test_a_loopback_redirect_warns_that_any_local_program_could_pose_as_the_client(cimd, redirect):
    client, documents = cimd
    client_id = documents.serve_document("/native.json", redirect_uris=[redirect])
    page = await consent_page(client, client_id, redirect)
    assert LOOPBACK_WARNING in page.text and 'class="warning"' in page.text


async def test_the_warning_follows_the_redirect_this_request_uses(cimd):
    """A client with both kinds: the loopback one warns, its own https one does not."""
    client, documents = cimd
    own = documents.url("/callback")
    client_id = documents.serve_document("/both.json", redirect_uris=[own, REDIRECT], application_type="native")
    assert LOOPBACK_WARNING in (await consent_page(client, client_id, REDIRECT)).text
    quiet = await consent_page(client, client_id, own)
    assert LOOPBACK_WARNING not in quiet.text and OTHER_ORIGIN not in quiet.text


@pytest.mark.parametrize(
    "redirect, shown",
    [
        ("https://app.other.example/callback", "app.other.example"),
        ("https://www.cimd.test/callback", "www.cimd.test"),  # a subdomain is another origin
        ("https://cimd.test/callback", "cimd.test"),  # the default port, not the document's
    ],
)
async def test_a_redirect_on_another_origin_warns(cimd, redirect, shown):
    client, documents = cimd
    client_id = documents.serve_document("/elsewhere.json", redirect_uris=[redirect])
    page = await consent_page(client, client_id, redirect)
    assert f"sends you back to {shown}, {OTHER_ORIGIN}" in page.text
    assert LOOPBACK_WARNING not in page.text


async def test_registered_clients_keep_the_unverified_warning_only(cimd):
    client, _ = cimd
    registered = await client.post(
        "/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Reg"}
    )
    start = await client.get("/authorize", params=authorize_params(registered.json()["client_id"]))
    page = await client.get(start.headers["location"])
    assert "Unverified application" in page.text and "Verified:" not in page.text
    assert LOOPBACK_WARNING not in page.text and OTHER_ORIGIN not in page.text
