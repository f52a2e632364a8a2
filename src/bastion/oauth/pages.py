"""Small HTML pages (errors, the dev sign-in form): every value escaped, locked-down headers.

The full consent screen arrives with the identity-provider issue; these pages follow the same rules already:
no script, a CSP that allows only the inline style carrying this response's nonce, never framed, never cached.
"""

from __future__ import annotations

import html
import secrets

from starlette.responses import HTMLResponse

STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:32rem;margin:4rem auto;padding:0 1rem;color:#1f2328}"
    "h1{font-size:1.4rem}p{line-height:1.5}.muted{color:#59636e;font-size:.9rem}"
    "input,button{font-size:1rem;padding:.5rem .75rem;border-radius:6px;border:1px solid #d1d9e0}"
    "button{background:#1f883d;color:#fff;border-color:#1a7f37;cursor:pointer}"
)


def page(title: str, body_html: str, status: int = 200) -> HTMLResponse:
    """`body_html` must already be escaped; `title` is escaped here."""
    nonce = secrets.token_urlsafe(16)
    document = (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width,initial-scale=1">'
        f'<title>{html.escape(title)}</title><style nonce="{nonce}">{STYLE}</style></head>'
        f"<body><h1>{html.escape(title)}</h1>{body_html}</body></html>"
    )
    return HTMLResponse(
        document,
        status,
        headers={
            "Content-Security-Policy": f"default-src 'none'; style-src 'nonce-{nonce}'; form-action 'self'; "
            "frame-ancestors 'none'; base-uri 'none'",
            "X-Frame-Options": "DENY",
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
            "Referrer-Policy": "no-referrer",
        },
    )


def error_page(description: str, status: int = 400) -> HTMLResponse:
    return page(
        "Sign-in request refused",
        f'<p>{html.escape(description)}</p><p class="muted">Return to the application and try again.</p>',
        status,
    )
