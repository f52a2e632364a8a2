"""Client ID Metadata Documents: a client_id that is an https URL names its own metadata, fetched from there.

The fetch goes through the SSRF-safe fetcher (https only, public addresses only, resolved once, no redirects,
at most 5 KB, short timeouts). The document must name itself (client_id equal to the URL), list its redirect
URIs, and hold no secrets; everything else is validated as a registration would be. Good documents are
cached as Cache-Control allows, for at most an hour; failures are never cached.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from urllib.parse import urlsplit

import orjson

from ..security.fetch import FetchError, SafeFetcher, cache_seconds
from .clients import Client, validate_registration
from .errors import OAuthError

DEFAULT_SECONDS = 300
MAX_SECONDS = 3600
MAX_ENTRIES = 1000


class ClientLookupError(Exception):
    """The client_id names a metadata document that cannot be used; the message says why."""


def is_document_url(client_id: str) -> bool:
    return client_id.startswith("https://")


def _check_url(client_id: str) -> None:
    try:
        parts = urlsplit(client_id)
    except ValueError:
        raise ClientLookupError("the client_id is not a valid URL") from None
    if parts.path in ("", "/") or parts.fragment or "#" in client_id:
        raise ClientLookupError("a client_id URL needs a path and no fragment")
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        raise ClientLookupError("a client_id URL may not contain dot segments")


class MetadataDocuments:
    def __init__(self, fetcher: SafeFetcher, scopes: list[str]) -> None:
        self.fetcher = fetcher
        self.scopes = scopes
        self._cache: OrderedDict[str, tuple[Client, float]] = OrderedDict()

    async def __call__(self, client_id: str) -> Client | None:
        if not is_document_url(client_id):
            return None
        cached = self._cache.get(client_id)
        if cached is not None and cached[1] > time.monotonic():
            self._cache.move_to_end(client_id)
            return cached[0]
        _check_url(client_id)
        try:
            fetched = await self.fetcher.get(client_id)
        except FetchError as exc:
            raise ClientLookupError(f"the client's metadata document could not be fetched: {exc.reason}") from None
        client = self._validate(client_id, fetched.body)
        seconds = cache_seconds(fetched.headers, DEFAULT_SECONDS, MAX_SECONDS)
        if seconds > 0:
            self._cache[client_id] = (client, time.monotonic() + seconds)
            while len(self._cache) > MAX_ENTRIES:
                self._cache.popitem(last=False)
        return client

    def _validate(self, client_id: str, body: bytes) -> Client:
        try:
            document = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise ClientLookupError("the client's metadata document is not JSON") from None
        if not isinstance(document, dict):
            raise ClientLookupError("the client's metadata document is not a JSON object")
        if document.get("client_id") != client_id:
            raise ClientLookupError("the metadata document's client_id is not the URL it was fetched from")
        if "client_secret" in document or "client_secret_expires_at" in document:
            raise ClientLookupError("a metadata document must not contain a client secret")
        method = document.get("token_endpoint_auth_method", "none")
        if method != "none":
            raise ClientLookupError("clients identified by a metadata document use token_endpoint_auth_method none")
        try:
            client = validate_registration({**document, "token_endpoint_auth_method": "none"}, self.scopes)
        except OAuthError as exc:
            raise ClientLookupError(f"the client's metadata document is invalid: {exc.description}") from None
        client.client_id = client_id
        client.metadata_document = True
        return client
