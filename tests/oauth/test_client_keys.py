"""Client keys in registration metadata (/register, RFC 7591): public keys only, never private or symmetric ones.

The same rule holds for metadata documents (tests/oauth/test_cimd.py), through the same validation.
"""

import pytest

from bastion.oauth.client_keys import jwks_problem
from tests.clients import records

from .conftest import REDIRECT
from .test_cimd import EC_PUBLIC, RSA_PUBLIC

OKP_PUBLIC = {"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}


def body(jwks: object, **more: object) -> dict:
    return {"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "jwks": jwks, **more}


@pytest.mark.parametrize(
    "jwks, reason",
    [
        ({"keys": [{**EC_PUBLIC, "d": "jpsQnnGQmL-YBIffH1136cspYG6-0iY7X1fCE9-E9LI"}]}, "public keys only"),
        ({"keys": [{**OKP_PUBLIC, "d": "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"}]}, "public keys only"),
        *(({"keys": [{**RSA_PUBLIC, member: "AQAB"}]}, "public keys only") for member in ("d", "p", "q", "dp", "dq")),
        ({"keys": [{**RSA_PUBLIC, "qi": "AQAB"}]}, "public keys only"),
        ({"keys": [{**RSA_PUBLIC, "oth": [{"r": "x", "d": "y", "t": "z"}]}]}, "public keys only"),
        ({"keys": [EC_PUBLIC, {"kty": "oct", "k": "c2VjcmV0LWtleQ"}]}, "symmetric (oct)"),
        ({"keys": [{"kty": "oct", "alg": "HS256"}]}, "symmetric (oct)"),  # oct with its k left out: still refused
        ({"keys": [{"kty": "EC", "k": "c2VjcmV0"}]}, "public keys only"),
        ({"keys": [{"crv": "P-256", "x": "a"}]}, "with a kty"),
        ({"keys": ["not a key"]}, "with a kty"),
        ({"keys": {"kty": "EC"}}, "JWK Set"),
        ([EC_PUBLIC], "JWK Set"),
        ("https://example.com/jwks.json", "JWK Set"),
        ({"keys": [EC_PUBLIC] * 21}, "JWK Set"),
    ],
)
async def test_private_key_material_is_refused_and_nothing_is_stored(oauth, jwks, reason):
    before = await records(oauth)  # every record, values too (the registration limit's counters aside)
    response = await oauth.post("/register", json=body(jwks))
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_client_metadata"
    assert reason in response.json()["error_description"]
    assert "c2VjcmV0" not in response.text and "jpsQnnGQ" not in response.text  # the key is never echoed
    assert await records(oauth) == before


async def test_jwks_and_jwks_uri_together_are_refused(oauth):
    response = await oauth.post("/register", json=body({"keys": [EC_PUBLIC]}, jwks_uri="https://example.com/k.json"))
    assert response.status_code == 400 and response.json()["error"] == "invalid_client_metadata"
    assert "not both" in response.json()["error_description"]


@pytest.mark.parametrize("jwks", [{"keys": [EC_PUBLIC, RSA_PUBLIC, OKP_PUBLIC]}, {"keys": []}])
async def test_public_keys_are_accepted(oauth, jwks):
    response = await oauth.post("/register", json=body(jwks))
    assert response.status_code == 201, response.text
    assert "jwks" not in response.json()  # not kept: no client authenticates with a key here


def test_metadata_without_keys_has_no_problem():
    assert jwks_problem({}) is None
    assert jwks_problem({"jwks_uri": "https://example.com/k.json"}) is None
