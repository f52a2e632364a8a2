"""A client's public keys in its metadata (`jwks`, `jwks_uri`; RFC 7591 section 2): public keys only.

Bastion authenticates no client by key today, so it keeps neither member; but metadata that publishes private
key material shows a client that leaked its own secret (a metadata document is public; a registration is stored),
and accepting it would say that is fine. So a `jwks` must be a JWK Set of public keys: no private members, no
symmetric (`oct`) keys. Both `jwks` and `jwks_uri` at once is refused, as RFC 7591 requires.
"""

from __future__ import annotations

from typing import Any

MAX_KEYS = 20
# Members that hold private or secret key material: RSA (d, p, q, dp, dq, qi, oth), EC and OKP (d), oct (k),
# and the draft post-quantum key types (priv).
PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k", "priv"})


def jwks_problem(metadata: dict[str, Any]) -> str | None:
    """Why the metadata's key members are unacceptable, or None."""
    jwks, jwks_uri = metadata.get("jwks"), metadata.get("jwks_uri")
    if jwks is not None and jwks_uri is not None:
        return "jwks and jwks_uri may not both be present"
    if jwks is None:
        return None
    keys = jwks.get("keys") if isinstance(jwks, dict) else None
    if not isinstance(keys, list) or len(keys) > MAX_KEYS:
        return f"jwks must be a JWK Set: an object whose keys member lists at most {MAX_KEYS} keys"
    for key in keys:
        if not isinstance(key, dict) or not isinstance(key.get("kty"), str):
            return "every key in jwks must be a JWK object with a kty"
        if key["kty"] == "oct":
            return "jwks may not contain symmetric (oct) keys"
        if PRIVATE_MEMBERS & key.keys():
            return "jwks may contain public keys only, never private key material"
    return None
