"""Client ID Metadata Documents at /authorize and /token: fetched safely, validated strictly, cached politely."""

import httpx
import pytest

from tests.mcp.conftest import build_app
from tests.security.test_fetch import pki  # noqa: F401 - the throwaway CA and cimd.test certificate
from tests.tls_documents import Reply, document_server

from .conftest import BASE, REDIRECT, authorize_params, query_of, settings, sign_in


@pytest.fixture
async def cimd(pki):  # noqa: F811
    async with document_server(pki) as documents:
        asgi = build_app().asgi(
            settings(metadata_document_ca_file=str(pki["ca"]), metadata_document_hosts={"cimd.test": "127.0.0.1"})
        )
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE) as client:
            yield client, documents


async def test_a_document_url_is_a_client_id(cimd):
    client, documents = cimd
    client_id = documents.serve_document("/app/client.json")
    start = await client.get("/authorize", params=authorize_params(client_id))
    page = await client.get(start.headers["location"])
    assert "Verified: cimd.test" in page.text and "Unverified application" not in page.text
    back = query_of(await sign_in(client, authorize_params(client_id)))
    tokens = await client.post(
        "/token",
        data={
            "grant_type": "authorization_code",
            "code": back["code"],
            "client_id": client_id,
            "redirect_uri": REDIRECT,
            "code_verifier": "test-verifier-" + "x" * 40,
        },
    )
    assert tokens.status_code == 200, tokens.text


@pytest.mark.parametrize(
    "fields, needle",
    [
        ({"client_id": "https://cimd.test/someone-else.json"}, "client_id"),
        ({"client_secret": "s3cret"}, "secret"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "none"),
        ({"redirect_uris": ["javascript:alert(1)"]}, "invalid"),
        ({"redirect_uris": []}, "invalid"),
    ],
)
async def test_documents_must_name_themselves_and_hold_no_secrets(cimd, fields, needle):
    client, documents = cimd
    url = documents.url("/bad.json")
    document = {"client_id": url, "redirect_uris": [REDIRECT], **fields}
    documents.serve_document("/bad.json", document)
    response = await client.get("/authorize", params=authorize_params(url))
    assert response.status_code == 400 and "location" not in response.headers
    assert needle in response.text


@pytest.mark.parametrize(
    "reply, needle",
    [
        (Reply(302, b"", {"Location": "https://cimd.test/elsewhere.json"}), "redirect"),
        (Reply(200, b"{" + b'"a":"' + b"x" * 6000 + b'"}', {"Content-Type": "application/json"}), "large"),
        (Reply(200, b"not json", {}), "JSON"),
        (Reply(404, b"", {}), "404"),
    ],
)
async def test_unusable_fetches_are_refused(cimd, reply, needle):
    client, documents = cimd
    documents.routes["/x.json"] = reply
    response = await client.get("/authorize", params=authorize_params(documents.url("/x.json")))
    assert response.status_code == 400 and "location" not in response.headers
    assert needle.lower() in response.text.lower()


@pytest.mark.parametrize(
    "client_id",
    [
        "https://127.0.0.1/client.json",
        "https://169.254.169.254/latest/meta-data/client.json",
        "https://[::ffff:127.0.0.1]/client.json",
        "https://localhost/client.json",
        "https://10.0.0.1/client.json",
        "http://cimd.test/client.json",
        "https://cimd.test/",
        "https://cimd.test/a/../client.json",
        "https://user@cimd.test/client.json",
    ],
)
async def test_ssrf_targets_are_refused_without_a_redirect(cimd, client_id):
    client, _ = cimd
    response = await client.get("/authorize", params=authorize_params(client_id))
    assert response.status_code == 400 and "location" not in response.headers


async def test_failures_are_not_cached_and_successes_follow_cache_control(cimd):
    client, documents = cimd
    url = documents.url("/cached.json")
    documents.routes["/cached.json"] = Reply(500, b"", {})
    assert (await client.get("/authorize", params=authorize_params(url))).status_code == 400
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
    asgi = build_app().asgi(settings(client_metadata_documents=False))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url=BASE) as client:
        response = await client.get("/authorize", params=authorize_params("https://cimd.test/client.json"))
        assert response.status_code == 400
        assert (await client.get("/.well-known/oauth-authorization-server")).json()[
            "client_id_metadata_document_supported"
        ] is False
