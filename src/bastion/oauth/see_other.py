"""Redirects that answer a form POST use 303 See Other.

A browser follows a 303 with a GET. After a 302 most browsers do too, but the specification lets them repeat
the POST, and a 307 or 308 must: the consent form or the sign-in form (CSRF token, user name) would then be
sent on to the application or the identity provider (RFC 9110 section 15.4; OAuth 2.1 section 7.5.2).
"""

from __future__ import annotations

from starlette.responses import Response

_REDIRECTS = {301, 302, 307, 308}


def see_other(response: Response) -> Response:
    """`response`, with any redirect made a 303; other responses (an error page) unchanged."""
    if response.status_code in _REDIRECTS:
        response.status_code = 303
    return response
