"""Services the store tests run against, started by the tests themselves (tests/services)."""

from tests.services.postgres import postgres_cluster, postgres_url
from tests.services.redis import redis_cluster, redis_server

__all__ = ["postgres_cluster", "postgres_url", "redis_cluster", "redis_server"]
