"""Playing the user's browser through /authorize, the consent screen and the dev login, over plain HTTP.

Python's cookie jar will not send Secure cookies to http://127.0.0.1, although browsers do for loopback, so the
__Host- cookies are carried by hand here.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

import httpx

from bastion.account.sessions import COOKIE

TOKEN = re.compile(r'name="(transaction|csrf_token)" value="([^"]*)"')
ACTION = re.compile(r'<form method="post" action="([^"]*)"')


def set_cookies(response: httpx.Response) -> dict[str, str]:
    cookies = {}
    for header in response.headers.get_list("set-cookie"):
        name, _, rest = header.partition("=")
        cookies[name] = rest.split(";", 1)[0]
    return cookies


def cookie_header(cookies: dict[str, str]) -> dict[str, str]:
    return {"cookie": "; ".join(f"{k}={v}" for k, v in cookies.items() if v)} if cookies else {}


def form_fields(html: str) -> dict[str, str]:
    return dict(TOKEN.findall(html))


def form_action(page: httpx.Response) -> httpx.URL:
    """Where the page's (first) form posts, as a browser resolves it: the page says, the tests do not guess."""
    found = ACTION.search(page.text)
    assert found is not None, page.text
    return page.url.join(found.group(1).replace("&amp;", "&"))


async def consent(client: httpx.AsyncClient, url: str, decision: str = "approve") -> httpx.Response:
    page = await client.get(url)
    assert page.status_code == 200, page.text
    fields = form_fields(page.text)
    return await client.post(
        form_action(page), data={**fields, "decision": decision}, headers=cookie_header(set_cookies(page))
    )


async def walk(client: httpx.AsyncClient, authorize_url: str, username: str = "alice") -> httpx.Response:
    """GET the authorize URL, approve, sign in; returns the final redirect back to the application."""
    response = await client.get(authorize_url)
    assert response.status_code == 302, response.text
    location = str(httpx.URL(authorize_url).join(response.headers["location"]))
    if "/consent" in location:
        approved = await consent(client, location)
        assert approved.status_code == 303, approved.text  # a redirect answering a POST
        location = str(httpx.URL(authorize_url).join(approved.headers["location"]))
    login = await client.get(location)
    transaction = form_fields(login.text)["transaction"]
    return await client.post(form_action(login), data={"transaction": transaction, "username": username})


def walk_sync(client: httpx.Client, authorize_url: str, username: str = "alice") -> httpx.Response:
    response = client.get(authorize_url)
    assert response.status_code == 302, response.text
    location = str(httpx.URL(authorize_url).join(response.headers["location"]))
    if "/consent" in location:
        page = client.get(location)
        approved = client.post(
            httpx.URL(location).join("/consent"),
            data={**form_fields(page.text), "decision": "approve"},
            headers=cookie_header(set_cookies(page)),
        )
        assert approved.status_code == 303, approved.text  # a redirect answering a POST
        location = str(httpx.URL(authorize_url).join(approved.headers["location"]))
    login = client.get(location)
    transaction = form_fields(login.text)["transaction"]
    return client.post(
        httpx.URL(authorize_url).join("/login/dev"), data={"transaction": transaction, "username": username}
    )


async def walk_upstream(
    client: httpx.AsyncClient,
    upstream: httpx.AsyncClient,
    authorize_url: str,
    login: str,
    sign_in_upstream: Callable[[httpx.AsyncClient, str, str], Awaitable[httpx.Response]],
) -> httpx.Response:
    """/authorize, the consent screen, the provider's own pages (in `upstream`), and back through Bastion's
    callback; returns the final redirect to the application."""
    response = await client.get(authorize_url)
    assert response.status_code == 302, response.text
    location = str(httpx.URL(authorize_url).join(response.headers["location"]))
    to_provider = await consent(client, location) if "/consent" in location else response
    assert to_provider.status_code == (303 if "/consent" in location else 302), to_provider.text
    state_cookie = {k: v for k, v in set_cookies(to_provider).items() if k.endswith("-state")}
    back = await sign_in_upstream(upstream, to_provider.headers["location"], login)
    return await client.get(back.headers["location"], headers=cookie_header(state_cookie))


async def start_authorization(http: httpx.AsyncClient, base: str, redirect_uri: str) -> str:
    """Register a public client and start an authorization (a fixed PKCE challenge); returns the consent URL."""
    registered = await http.post(
        f"{base}/register", json={"redirect_uris": [redirect_uri], "token_endpoint_auth_method": "none"}
    )
    params = {
        "response_type": "code",
        "client_id": registered.json()["client_id"],
        "redirect_uri": redirect_uri,
        "state": "s",
        "code_challenge": "c" * 43,
        "code_challenge_method": "S256",
    }
    start = await http.get(f"{base}/authorize", params=params)
    return base + start.headers["location"]


async def account_sign_in(client: httpx.AsyncClient, username: str, return_to: str = "/account") -> dict[str, str]:
    """Walk the account sign-in as a browser would; the cookie header of the signed-in browser."""
    page = await client.get(return_to)
    assert page.status_code == 200 and 'value="dev"' in page.text
    started = await client.post("/account/sign-in", data={"method": "dev", "return_to": return_to})
    assert started.status_code == 303, started.text
    login = await client.get(started.headers["location"])
    transaction = form_fields(login.text)["transaction"]
    done = await client.post("/login/dev", data={"transaction": transaction, "username": username})
    assert done.status_code == 303 and done.headers["location"] == return_to, done.text
    cookies = set_cookies(done)
    assert f"__Host-{COOKIE}" in cookies
    assert "HttpOnly" in done.headers["set-cookie"] and "SameSite=Lax" in done.headers["set-cookie"]
    return cookie_header({f"__Host-{COOKIE}": cookies[f"__Host-{COOKIE}"]})
