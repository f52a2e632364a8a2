"""Where each kind of authorization server puts the granted scopes, the client and the user in its tokens.

RFC 9068 says `scope` (a space-separated string), `client_id` and `sub`; providers vary. Okta and Entra call the
scopes `scp` (a list in Okta, a string in Entra); Auth0, WorkOS and Descope add RBAC `permissions`; Entra puts app
permissions in `roles` and a tenant-wide user id in `oid`; Okta's stable user id is `uid`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ClaimMap:
    scope_claims: tuple[str, ...] = ("scope", "scp")
    subject_claim: str = "sub"
    client_claims: tuple[str, ...] = ("client_id", "azp", "cid", "appid")

    def scopes(self, claims: Mapping[str, Any]) -> frozenset[str]:
        found: set[str] = set()
        for name in self.scope_claims:
            value = claims.get(name)
            if isinstance(value, str):
                found.update(value.split())
            elif isinstance(value, list):
                found.update(item for item in value if isinstance(item, str) and item and " " not in item)
        return frozenset(found)

    def subject(self, claims: Mapping[str, Any]) -> str | None:
        for name in (self.subject_claim, "sub"):
            value = claims.get(name)
            if isinstance(value, str) and value:
                return value
        return None

    def client(self, claims: Mapping[str, Any]) -> str:
        for name in self.client_claims:
            value = claims.get(name)
            if isinstance(value, str) and value:
                return value
        return ""


PRESETS: dict[str, ClaimMap] = {
    "generic": ClaimMap(),
    "workos": ClaimMap(scope_claims=("scope", "permissions")),
    "auth0": ClaimMap(scope_claims=("scope", "permissions")),
    "descope": ClaimMap(scope_claims=("scope", "permissions")),
    "keycloak": ClaimMap(scope_claims=("scope",)),
    "okta": ClaimMap(scope_claims=("scp",), subject_claim="uid"),
    "entra": ClaimMap(scope_claims=("scp", "roles"), subject_claim="oid"),
}


def claim_map(preset: str, scope_claims: list[str] | None, subject_claim: str | None) -> ClaimMap:
    base = PRESETS[preset]
    return ClaimMap(
        scope_claims=tuple(scope_claims) if scope_claims is not None else base.scope_claims,
        subject_claim=subject_claim or base.subject_claim,
        client_claims=base.client_claims,
    )
