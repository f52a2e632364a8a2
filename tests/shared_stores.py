"""Settings and fixtures for tests of several instances on one shared store (PostgreSQL or Redis)."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.settings import Settings

# Every instance on a shared store must sign with the same keys (the settings refuse to start otherwise).
STATE_SECRET = "s" * 8 + "Zq7!pL2@xV9#mK4$wR6%tY8^uJ3&nB5*"
COOKIE_SECRET = "c" * 8 + "Hq7!pL2@xV9#mK4$wR6%tY8^uJ3&nB5*"


def shared(backend: str, url: str, monkeypatch: pytest.MonkeyPatch, **sections: Any) -> Settings:
    """Settings for one instance on the shared store at `url` (given through url_env, as in production)."""
    monkeypatch.setenv("SHARED_STORE_URL", url)
    return Settings.load(
        env={},
        state_secret=STATE_SECRET,
        store={"backend": backend, "url_env": "SHARED_STORE_URL"},
        authorization_server={"cookie_secret": COOKIE_SECRET, **sections.pop("authorization_server", {})},
        **sections,
    )


@pytest.fixture(params=["postgres", "redis"])
def store_url(request: pytest.FixtureRequest) -> tuple[str, str]:
    """(backend, url) of an empty shared store: a new PostgreSQL database, or the session's Redis flushed."""
    if request.param == "postgres":
        return "postgres", request.getfixturevalue("postgres_url")
    server = request.getfixturevalue("redis_server")
    server.flush()
    return "redis", server.url
