"""Finding an external issuer's metadata: RFC 8414 and OpenID Connect locations, exact issuer, bounded answers."""

import httpx
import orjson
import pytest

from bastion.resource.discovery import MAX_DOCUMENT_BYTES, IssuerUnavailable, Metadata, metadata_urls


def test_metadata_locations_follow_the_order_mcp_clients_use():
    assert metadata_urls("https://a.example") == [
        "https://a.example/.well-known/oauth-authorization-server",
        "https://a.example/.well-known/openid-configuration",
    ]
    assert metadata_urls("https://t.auth0.com/") == metadata_urls("https://t.auth0.com")
    assert metadata_urls("https://login.example/tenant/v2.0") == [
        "https://login.example/.well-known/oauth-authorization-server/tenant/v2.0",
        "https://login.example/.well-known/openid-configuration/tenant/v2.0",
        "https://login.example/tenant/v2.0/.well-known/openid-configuration",
    ]


def serving(documents: dict[str, object], seen: list[str] | None = None) -> httpx.AsyncClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if seen is not None:
            seen.append(str(request.url))
        body = documents.get(str(request.url))
        if body is None:
            return httpx.Response(404, stream=httpx.ByteStream(b""))
        raw = body if isinstance(body, bytes) else orjson.dumps(body)
        return httpx.Response(200, stream=httpx.ByteStream(raw))  # streamed, as from a real server

    return httpx.AsyncClient(transport=httpx.MockTransport(answer))


async def test_rfc8414_metadata_at_a_path_issuer_is_found():
    issuer = "https://as.example/realms/corp"
    url = "https://as.example/.well-known/oauth-authorization-server/realms/corp"
    seen: list[str] = []
    metadata = Metadata(issuer, serving({url: {"issuer": issuer, "jwks_uri": "https://as.example/keys"}}, seen))
    assert (await metadata.get())["jwks_uri"] == "https://as.example/keys"
    await metadata.get()
    assert seen == [url]  # found first, and remembered


async def test_the_trailing_slash_spelling_of_the_document_is_kept():
    url = "https://t.auth0.com/.well-known/openid-configuration"
    metadata = Metadata("https://t.auth0.com", serving({url: {"issuer": "https://t.auth0.com/"}}))
    assert (await metadata.get())["issuer"] == "https://t.auth0.com/"


@pytest.mark.parametrize(
    "document",
    [
        {"issuer": "https://evil.example"},
        {"issuer": "https://a.example.evil"},
        {"issuer": "https://a.example", "jwks_uri": "http://keys.example/jwks"},  # plain http off loopback
        {"issuer": "https://a.example", "introspection_endpoint": 7},
        b"x" * (MAX_DOCUMENT_BYTES + 1),
    ],
)
async def test_metadata_that_cannot_be_trusted_is_not_used(document):
    url = "https://a.example/.well-known/oauth-authorization-server"
    with pytest.raises(IssuerUnavailable):
        await Metadata("https://a.example", serving({url: document})).get()


async def test_an_unreachable_issuer_is_retried_only_after_a_pause():
    seen: list[str] = []
    metadata = Metadata("https://down.example", serving({}, seen))
    for _ in range(20):
        with pytest.raises(IssuerUnavailable):
            await metadata.get()
    assert len(seen) == 2  # the two locations, once
