"""Client ID Metadata Documents: a client_id that is an https URL names its own metadata, fetched from there.

The fetch goes through the SSRF-safe fetcher (https only, public addresses only, resolved once, no redirects,
at most 5 KB, short timeouts). The document must name itself (client_id equal to the URL), list its redirect
URIs, and hold no secrets; everything else is validated as a registration would be. Good documents are
cached as Cache-Control allows, for at most an hour; failures are never cached.

Whoever presents a client_id chooses the URL, and so sees the page that answers it: that page says only that the
document could not be used. Why (a lookup that failed, an address refused, a status, a field) goes to the log,
or the server would tell anyone what its own network looks like from inside.
"""

from __future__ import annotations

import logging
import re
import time
from collections import OrderedDict
from urllib.parse import unquote, urlsplit

import orjson

from ..security.fetch import FetchError, SafeFetcher, cache_seconds
from .clients import Client, validate_registration
from .errors import OAuthError

DEFAULT_SECONDS = 300
MAX_SECONDS = 3600
MAX_ENTRIES = 1000


log = logging.getLogger("bastion.oauth")

PUBLIC_MESSAGE = "This application's client metadata document (its client_id URL) could not be used."
_ENCODED_SEPARATOR = re.compile(r"%(?:2f|5c)", re.IGNORECASE)


class ClientLookupError(Exception):
    """The client_id names a metadata document that cannot be used.

    str() is the same public message whatever the cause; `reason` says why, for the log only.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(PUBLIC_MESSAGE)
        self.reason = reason


def is_document_url(client_id: str) -> bool:
    return client_id.startswith("https://")


def _check_url(client_id: str) -> None:
    try:
        parts = urlsplit(client_id)
    except ValueError:
        raise ClientLookupError("the client_id is not a valid URL") from None
    if parts.path in ("", "/") or parts.fragment or "#" in client_id:
        raise ClientLookupError("a client_id URL needs a path and no fragment")
    if _ENCODED_SEPARATOR.search(parts.path):
        raise ClientLookupError("a client_id URL may not contain an encoded slash or backslash")
    if any(_is_dot_segment(segment) for segment in parts.path.split("/")):
        raise ClientLookupError("a client_id URL may not contain dot segments")


def _is_dot_segment(segment: str) -> bool:
    """'.' or '..' however spelled: percent-encoded (any case, even several times over), hiding an encoded
    separator ('..%252f'), or with ;parameters that some servers drop before normalising the path ('..;x')."""
    for _ in range(4):
        if "/" in segment or "\\" in segment:
            return True  # an encoded separator, decoded: a path some server may split differently
        decoded = unquote(segment)
        if decoded == segment:
            return segment.split(";", 1)[0] in (".", "..")
        segment = decoded
    return True  # still encoded after four rounds of decoding: no real client needs that


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
        try:
            return await self._load(client_id)
        except ClientLookupError as exc:
            # Info, not warning: anyone can cause these by presenting a URL; repr() keeps the line one line.
            log.info("client metadata document %r refused: %s", client_id[:300], exc.reason)
            raise

    async def _load(self, client_id: str) -> Client:
        _check_url(client_id)
        try:
            fetched = await self.fetcher.get(client_id)
        except FetchError as exc:
            raise ClientLookupError(f"could not be fetched: {exc.reason}") from None
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
