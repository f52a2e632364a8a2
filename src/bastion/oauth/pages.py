"""HTML pages (consent, dev sign-in, errors): autoescaping templates and locked-down headers.

Every value reaches the page through Jinja2 with autoescape on. Responses carry a CSP that allows nothing but
the inline style bearing this response's nonce (no script at all), refuse framing, are never cached, and send
no referrer.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from jinja2 import Environment, PackageLoader, select_autoescape
from starlette.responses import HTMLResponse

_templates = Environment(
    loader=PackageLoader("bastion.oauth", "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)


def origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def page_headers(nonce: str, form_targets: Iterable[str | None] = ()) -> dict[str, str]:
    # Browsers apply form-action to the redirect a form post answers with too, so the origins a form is known to
    # lead to (the application's redirect URI, the identity provider) are listed beside 'self', and no others.
    origins = {origin for origin in (origin_of(t) for t in form_targets if t) if origin}
    allowed = " ".join(["'self'", *sorted(origins)])
    return {
        "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; img-src https:; "
        f"form-action {allowed}; frame-ancestors 'none'; base-uri 'none'",
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",
        "Referrer-Policy": "no-referrer",
    }


def render(template: str, status: int = 200, form_targets: Iterable[str | None] = (), **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    html = _templates.get_template(template).render(nonce=nonce, **context)
    return HTMLResponse(html, status, headers=page_headers(nonce, form_targets))


def error_page(description: str, status: int = 400) -> HTMLResponse:
    return render(
        "message.html",
        status,
        title="Sign-in request refused",
        lines=[description],
        note="Return to the application and try again.",
    )


def unavailable_page(retry_after: int) -> HTMLResponse:
    """503 for a browser when the store cannot answer: what to do, not what broke."""
    response = render(
        "message.html",
        503,
        title="Temporarily unavailable",
        lines=["This server cannot complete sign-in requests right now."],
        note="Wait a moment, then start again from the application.",
    )
    response.headers["Retry-After"] = str(retry_after)
    return response
