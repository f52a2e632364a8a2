"""Services the store tests run against, started by the tests themselves (tests/services)."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.services.postgres import postgres_cluster, postgres_url
from tests.services.redis import RedisServer, redis_cluster, redis_server
from tests.services.running import running

__all__ = ["own_server", "postgres_cluster", "postgres_url", "redis_cluster", "redis_server"]


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A Redis of this test's own, which it may stop, kill and start again (the session's one is shared)."""
    root = tmp_path / "redis"
    root.mkdir()
    with running(RedisServer(root)) as server:
        yield server
