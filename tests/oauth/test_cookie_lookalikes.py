"""Look-alike cookies against the three security cookies, in process.

Any page on this host (another port, plain http) or a sibling subdomain can set a cookie named, say,
`\\xa0__Host-bastion-approvals`: no browser rule protects that name, and a lenient parser would read it as the
real `__Host-` cookie. Each test plants such a look-alike, carrying a value the attacker really obtained from
Bastion, and checks that it is not honoured and that nothing changed; then that the real cookie still works.
"""

import pytest

from bastion.security.crypto import token_hash
from bastion.store import keys
from tests.browser import cookie_header, form_fields, set_cookies
from tests.clients import records, store_of

from .conftest import REDIRECT, authorize_params, register
from .test_consent import approve_and_sign_in, consent_page, post
from .test_upstream_login import fake, to_provider  # noqa: F401 - the in-process app with a fake provider

# The bytes a lenient cookie parser (Starlette's, or str.strip) drops around a name; tests/security/test_cookies.py
# checks the reader against every byte.
STRIPPED = [0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20, 0x85, 0xA0]
LOOKALIKES = [(where, byte) for where in ("before", "after") for byte in STRIPPED]
IDS = [f"{where}-0x{byte:02x}" for where, byte in LOOKALIKES]


def lookalike(where: str, byte: int, name: str, value: str) -> dict[str, bytes]:
    """A raw Cookie header carrying `name` with one extra byte before or after it (and no real cookie)."""
    extra, raw = bytes([byte]), name.encode()
    return {"cookie": (extra + raw if where == "before" else raw + extra) + b"=" + value.encode()}


@pytest.mark.parametrize("where, byte", LOOKALIKES, ids=IDS)
async def test_a_lookalike_state_cookie_does_not_bind_the_callback(fake, where, byte):  # noqa: F811
    client, _ = fake
    # The attacker starts a sign-in in their own browser and keeps its cookie; the victim's browser gets the
    # provider's callback for it (the attacker's captured link) with that cookie planted under a look-alike name.
    state, cookies, _ = await to_provider(client)
    [(name, binding)] = cookies.items()
    before = await records(client)
    forged = await client.get(
        "/callback/fake", params={"code": "c", "state": state}, headers=lookalike(where, byte, name, binding)
    )
    assert forged.status_code == 400 and "started in another browser" in forged.text
    assert "location" not in forged.headers
    assert await records(client) == before  # the state is not used up; no code, no grant
    assert not [key for key in before if key.startswith((keys.kind_prefix("code"), keys.kind_prefix("grant")))]
    # The real cookie still completes that very sign-in.
    done = await client.get("/callback/fake", params={"code": "c", "state": state}, headers=cookie_header(cookies))
    assert done.status_code == 302 and done.headers["location"].startswith(REDIRECT + "?code=")


@pytest.mark.parametrize("where, byte", LOOKALIKES, ids=IDS)
async def test_a_lookalike_csrf_cookie_is_not_the_double_submit(oauth, where, byte):
    client = await register(oauth)
    page, location = await consent_page(oauth, client["client_id"])
    fields = {**form_fields(page.text), "decision": "approve"}
    [(name, token)] = set_cookies(page).items()
    planted = lookalike(where, byte, name, token)
    before = await records(oauth)
    refused = await oauth.post("/consent", data=fields, headers={**planted, "sec-fetch-site": "same-origin"})
    assert refused.status_code == 403 and "did not come from this browser" in refused.text
    assert "location" not in refused.headers
    assert await records(oauth) == before  # the transaction is neither approved nor consumed
    # Nor does the page take the planted token for this browser's own: it hands out a new one.
    again = await oauth.get(location, headers=planted)
    assert again.status_code == 200 and form_fields(again.text)["csrf_token"] != token
    # The real pair still works.
    approved = await post(oauth, fields, {name: token})
    assert approved.status_code == 303 and approved.headers["location"].startswith("/login/dev?")


@pytest.mark.parametrize("where, byte", LOOKALIKES, ids=IDS)
async def test_a_lookalike_approvals_cookie_is_not_remembered(oauth, where, byte):
    client, other = await register(oauth), await register(oauth)
    # A genuine, signed approvals cookie (here, alice's own), planted under a look-alike name.
    [(name, value)] = (await approve_and_sign_in(oauth, client["client_id"])).items()
    planted = {**lookalike(where, byte, name, value), "sec-fetch-site": "none"}
    shown = await oauth.get("/authorize", params=authorize_params(client["client_id"]), headers=planted)
    assert shown.status_code == 302 and shown.headers["location"].startswith("/consent?transaction=")
    transaction = shown.headers["location"].split("transaction=", 1)[1]
    record = await store_of(oauth).get(keys.transaction(token_hash(transaction)))
    assert record["remembered_subject"] is None and record["approved"] is False
    # Signing in to another client beside the look-alike: the new approvals cookie holds that approval only,
    # nothing copied from the look-alike.
    page, _ = await consent_page(oauth, other["client_id"])
    approved = await post(oauth, {**form_fields(page.text), "decision": "approve"}, set_cookies(page))
    login = await oauth.get(approved.headers["location"])
    done = await oauth.post("/login/dev", data={**form_fields(login.text), "username": "alice"}, headers=planted)
    assert done.status_code == 303 and "code=" in done.headers["location"]
    fresh = {k: v for k, v in set_cookies(done).items() if "approvals" in k}
    first = await oauth.get(
        "/authorize",
        params=authorize_params(client["client_id"]),
        headers={**cookie_header(fresh), "sec-fetch-site": "none"},
    )
    assert first.headers["location"].startswith("/consent?")
    # The real cookie is honoured, so the refusals above are the look-alike's.
    silent = await oauth.get(
        "/authorize",
        params=authorize_params(client["client_id"]),
        headers={**cookie_header({name: value}), "sec-fetch-site": "none"},
    )
    assert silent.headers["location"].startswith("/login/dev?")


async def test_a_duplicated_security_cookie_counts_as_absent(oauth):
    client = await register(oauth)
    page, _ = await consent_page(oauth, client["client_id"])
    fields = {**form_fields(page.text), "decision": "approve"}
    [(name, token)] = set_cookies(page).items()
    before = await records(oauth)
    # The second copy might come from a subdomain (Domain=) or another Path: which one is ours cannot be told.
    for header in (f"{name}={token}; {name}={token}", f"{name}={token}; {name}={'x' * 43}"):
        refused = await oauth.post("/consent", data=fields, headers={"cookie": header})
        assert refused.status_code == 403 and "location" not in refused.headers
    assert await records(oauth) == before
    assert (await post(oauth, fields, {name: token})).status_code == 303
