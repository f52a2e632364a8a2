"""Reading OAuth request parameters: each one at most once (RFC 6749 section 3.1), sizes bounded."""

from __future__ import annotations

from urllib.parse import parse_qsl

from starlette.requests import Request

from ..security.body import BodyError, request_body
from .errors import OAuthError, invalid_request
from .quoting import quote

MAX_FORM_BYTES = 64 * 1024


def single_values(pairs: list[tuple[str, str]]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name, value in pairs:
        if name in values:
            raise invalid_request(f"parameter {quote(name)} was sent more than once")  # a name may be huge
        values[name] = value
    return values


def from_this_site(request: Request) -> bool:
    """A form posted from a page of this server. Browsers that send no Sec-Fetch-Site are left to the form's other
    checks (its CSRF token)."""
    return request.headers.get("sec-fetch-site", "same-origin") == "same-origin"


def query(request: Request) -> dict[str, str]:
    return single_values(parse_qsl(request.url.query, keep_blank_values=True))


async def bounded_body(request: Request, limit: int) -> bytes:
    """The body, read at most to `limit`: invalid_request with status 413 above it (400 for a broken one)."""
    try:
        return await request_body(request, limit)
    except BodyError as exc:
        raise OAuthError("invalid_request", str(exc), exc.status) from None


async def form(request: Request) -> dict[str, str]:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type != "application/x-www-form-urlencoded":
        raise invalid_request("the body must be application/x-www-form-urlencoded")
    body = await bounded_body(request, MAX_FORM_BYTES)
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid_request("the body is not UTF-8") from None
    try:
        pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=100)
    except ValueError:
        raise invalid_request("too many parameters") from None
    return single_values(pairs)
