"""Bastion spread over several instances, as docs/deployment.md runs it: a shared store of the tests' own
(PostgreSQL, a single Redis, or a 3-master Redis Cluster), `INSTANCES` `bastion serve` instances on it sharing
their secrets and public URL, and HAProxy (examples/haproxy.cfg) in front, round robin without affinity.

A test gets a `Deployment`: HAProxy's public URL, each instance's own address (bypassing the proxy), the logs,
the store's failures (down, then up) and a reader of the records the instances wrote."""

from __future__ import annotations

import re
import secrets
import ssl
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bastion.store import Store
from bastion.store.factory import open_store
from tests.oauth.conftest import REDIRECT
from tests.services import postgres, redis
from tests.waiting import wait_until

from .conftest import ROOT, bastion_server, free_port
from .haproxy import example_env, example_for, proxy

INSTANCES = 3
SERVER = ROOT / "tests" / "e2e" / "servers" / "processes.py"  # its `pid` tool tells which instance answered
BACKENDS = ("postgres", "redis", "redis-cluster")


@dataclass
class SharedStore:
    url: str
    down: Callable[[], None]
    up: Callable[[], None]


def _crash(cluster: redis.RedisCluster) -> None:
    for node in cluster.nodes:
        node.kill()


def _restart(cluster: redis.RedisCluster) -> None:
    for node in cluster.nodes:
        node.start()  # same ports and folders: the nodes find each other again from nodes.conf
    wait_until(cluster.ready, "every node of the Redis Cluster saying cluster_state:ok again")


@contextmanager
def shared_store(backend: str) -> Iterator[SharedStore]:
    """A store of the tests' own for `backend` (one of BACKENDS), removed afterwards. `down` is a crash for the
    Redis kinds (SIGKILL: no chance to flush) and a clean stop for PostgreSQL."""
    if backend == "postgres":
        with postgres.running_cluster() as cluster:
            yield SharedStore(cluster.database(), cluster.stop, cluster.start)
    elif backend == "redis":
        with redis.running_server() as server:
            yield SharedStore(server.url, server.kill, server.start)
    elif backend == "redis-cluster":
        with redis.running_cluster() as nodes:
            yield SharedStore(nodes.url, lambda: _crash(nodes), lambda: _restart(nodes))
    else:
        raise ValueError(f"no shared store {backend!r}: use one of {', '.join(BACKENDS)}")


@dataclass
class Deployment:
    backend: str  # one of BACKENDS
    base: str  # HAProxy's https URL, the public_url every instance shares
    direct: list[str]  # each instance's own http://127.0.0.1:<port>, bypassing the proxy
    logs: list[Path]
    trust: Path
    store_down: Callable[[], None]
    store_up: Callable[[], None]
    store_url: str

    @property
    def verify(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.trust)

    @property
    def proxy_log(self) -> Path:
        """HAProxy's output (tests/e2e/haproxy.py writes it beside the trust file): its request log, and the
        health checks' verdicts ("Server bastion/bastion2 is DOWN")."""
        return self.trust.parent / "haproxy.log"

    @staticmethod
    def proxy_name(instance: int) -> str:
        """HAProxy's name for `direct[instance]` (example_for numbers the server lines from 1)."""
        return f"bastion/bastion{instance + 1}"

    def assert_clean(self) -> None:
        """No instance answered a 500 or wrote a traceback, whatever the test did to it (the store going away
        included: asyncpg's pool used to log a traceback a second while it could not restore its idle floor)."""
        for log in self.logs:
            text = log.read_text(errors="replace")
            assert "Traceback" not in text and not re.search(r'" 500\b', text), f"{log.name}:\n{text[-4000:]}"

    @asynccontextmanager
    async def records(self) -> AsyncIterator[Store]:
        """The shared store, opened on the caller's event loop, to read what the instances wrote."""
        backend = "redis" if self.backend == "redis-cluster" else self.backend
        store = open_store(backend, url=self.store_url, cluster=True if self.backend == "redis-cluster" else None)
        await store.start()
        try:
            yield store
        finally:
            await store.close()


@contextmanager
def deployed(
    backend: str, folder: Path, instances: int = INSTANCES, settings: dict[str, str] | None = None
) -> Iterator[Deployment]:
    """The store of the tests' own, `instances` instances of tests/e2e/servers/processes.py sharing it (same
    secrets, same public URL, HAProxy trusted), HAProxy in front; everything stopped and removed afterwards.
    `settings` (BASTION_* variables) add to, or replace, what every instance gets."""
    with ExitStack() as stack:
        store = stack.enter_context(shared_store(backend))
        listen, ports = free_port(), [free_port() for _ in range(instances)]
        env = example_env(folder, listen, ports)
        shared = {
            "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
            "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
            # A Redis Cluster is recognised by asking the server (docs/deployment.md): not set here on purpose.
            "BASTION_STORE__BACKEND": "redis" if backend == "redis-cluster" else backend,
            "BASTION_STORE__URL_ENV": "SHARED_STORE_URL",
            "SHARED_STORE_URL": store.url,
            "BASTION_STATE_SECRET": secrets.token_urlsafe(32),
            "BASTION_AUTHORIZATION_SERVER__COOKIE_SECRET": secrets.token_urlsafe(32),
            "BASTION_PUBLIC_URL": f"https://localhost:{listen}",
            "BASTION_TRUSTED_PROXIES": "127.0.0.1",
            "BASTION_JSON_RESPONSE": "true",
            **(settings or {}),
        }
        logs = [folder / f"instance{i}.log" for i in range(instances)]
        for port, log in zip(ports, logs, strict=True):
            stack.enter_context(bastion_server(SERVER, env=shared, port=port, log=log))
        trust = folder / "trust.pem"
        base = stack.enter_context(proxy(env, trust, listen, example_for(folder, instances)))
        yield Deployment(
            backend, base, [f"http://127.0.0.1:{p}" for p in ports], logs, trust, store.down, store.up, store.url
        )


async def register(http: httpx.AsyncClient, base: str) -> str:
    """A new public client (the tests' redirect URI) registered at `base`; its id."""
    answer = await http.post(
        f"{base}/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
    )
    assert answer.status_code == 201, answer.text
    return str(answer.json()["client_id"])


def refresh_form(client_id: str, refresh_token: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh_token, "client_id": client_id}
