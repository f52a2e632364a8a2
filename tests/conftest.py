"""Markers every test gets from what it uses, so that lanes can be chosen by what they need."""

from __future__ import annotations

import pytest

# Fixtures that start a service process (tests/services): PostgreSQL, redis-server.
SERVICE_FIXTURES = {"postgres_cluster", "postgres_url", "redis_server", "redis_cluster"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.services)
