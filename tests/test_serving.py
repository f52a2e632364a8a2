"""What `bastion serve` hands uvicorn: which forwarded headers are believed (trusted_proxies), and what each of
--workers N processes receives and builds."""

from __future__ import annotations

import pickle
import secrets
from functools import partial
from typing import Any

import httpx
import pytest
import uvicorn

from bastion.cli.target import load_app
from bastion.processes import WorkerConfig, with_shared_keys, workers_problem
from bastion.security.http_protocol import BoundedHttpToolsProtocol
from bastion.serve import uvicorn_options
from bastion.settings import Settings
from bastion.settings.check import start_up_problems
from tests.mcp.conftest import build_app

FORWARDED = {"x-forwarded-for": "203.0.113.9", "x-forwarded-proto": "https"}


def dev_login(tmp_path: Any, **top: Any) -> Settings:
    return Settings.load(
        env={},
        allowed_hosts=["mcp.example.com"],
        store={"backend": "sqlite", "path": str(tmp_path / "bastion.db")},
        authorization_server={"enabled": True, "dev_login": True},
        **top,
    )


def served(settings: Settings) -> Any:
    """The application exactly as uvicorn runs it with `bastion serve`'s options (its proxy middleware included)."""
    config = uvicorn.Config(build_app().asgi(settings), **uvicorn_options(settings))
    config.load()
    return config.loaded_app


async def seen(settings: Settings, peer: str) -> tuple[int, int]:
    """What a request from `peer` with forged forwarded headers gets: (the dev login page, a same-origin request
    from a plain-http page). The dev login is refused to any client address off loopback; a page on
    http://mcp.example.com is this server's own origin only if the request came in over http."""
    transport = httpx.ASGITransport(app=served(settings), client=(peer, 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as http:
        page = await http.get("/login/dev?transaction=x", headers=FORWARDED)
        origin = {"host": "mcp.example.com", "origin": "http://mcp.example.com"}
        health = await http.get("/healthz", headers={**FORWARDED, **origin})
    return page.status_code, health.status_code


async def test_by_default_no_one_may_set_the_client_address_or_scheme(tmp_path):
    settings = dev_login(tmp_path)
    assert uvicorn_options(settings)["proxy_headers"] is False  # uvicorn's own default believes loopback
    # From this machine, as uvicorn would have believed it: still the loopback client, still plain http.
    assert await seen(settings, "127.0.0.1") == (200, 200)


async def test_a_trusted_proxy_sets_the_client_address_and_scheme(tmp_path):
    settings = dev_login(tmp_path, trusted_proxies=["127.0.0.1"])
    # The proxy says the client is 203.0.113.9 over https: the dev login refuses it, and an http page is
    # another origin than an https request's.
    assert await seen(settings, "127.0.0.1") == (403, 403)


async def test_forwarded_headers_from_a_peer_outside_the_list_are_ignored(tmp_path):
    settings = dev_login(tmp_path, trusted_proxies=["10.0.0.0/8", "::1"])
    assert await seen(settings, "127.0.0.1") == (200, 200)


def test_a_memory_store_is_refused_for_several_workers():
    def problem(workers: int, **settings: object) -> str | None:
        return workers_problem(Settings.load(env={}, workers=workers, **settings))

    memory = {"store": {"backend": "memory"}}
    grants = problem(2, authorization_server={"enabled": True}, **memory)
    assert grants is not None and "\n" not in grants
    assert grants.startswith("--workers 2 with store.backend = 'memory': each worker would keep its own grants")
    sessions = problem(3, **memory)  # legacy sessions are kept by default
    assert sessions is not None and "\n" not in sessions
    assert sessions.startswith("--workers 3 with store.backend = 'memory': each worker would keep its own sessions")
    assert problem(1, authorization_server={"enabled": True}, **memory) is None
    assert problem(4, stateful=False, **memory) is None  # nothing kept: stateless requests, no grants
    assert problem(4, authorization_server={"enabled": True}) is None  # sqlite


def test_workers_on_one_sqlite_file_share_it_and_need_the_same_keys():
    alone = Settings.load(env={})
    assert not alone.shared_by_processes and not Settings.load(env={}, store={"backend": "memory"}).shared_by_processes
    workers = Settings.load(env={}, workers=3)
    assert workers.shared_by_processes
    problems = [line for line in start_up_problems(workers) if line.startswith("workers = 3")]
    assert len(problems) == 2 and "state_secret must be set" in problems[0] and "bastion.db" in problems[0]
    assert "authorization_server.cookie_secret must be set" in problems[1]
    with_shared_keys(workers).check()  # what `bastion serve --workers` hands its workers passes


def test_every_worker_gets_the_same_signing_keys():
    unset = Settings.load(env={}, authorization_server={"enabled": True, "dev_login": True})
    shared = with_shared_keys(unset)
    assert shared.state_secret is not None and shared.authorization_server.cookie_secret is not None
    assert shared.state_secret.get_secret_value() != shared.authorization_server.cookie_secret.get_secret_value()
    shared.check()  # strong enough for the start-up checks
    # Drawn once, in the parent: what each worker unpickles is the same key.
    copies = [pickle.loads(pickle.dumps(shared)) for _ in range(2)]
    assert {c.state_secret.get_secret_value() for c in copies} == {shared.state_secret.get_secret_value()}
    # Keys the settings give are kept as they are.
    state, cookie = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
    given = Settings.load(env={}, state_secret=state, authorization_server={"cookie_secret": cookie})
    kept = with_shared_keys(given)
    assert kept.state_secret.get_secret_value() == state
    assert kept.authorization_server.cookie_secret.get_secret_value() == cookie
    assert unset.state_secret is None  # the parent's own settings are left as they were


def test_a_worker_builds_bastion_and_the_bounded_protocol_from_what_it_was_sent(tmp_path):
    target = tmp_path / "server.py"
    target.write_text("from bastion import App\napp = App('in-a-worker')\n")
    settings = dev_login(tmp_path, max_header_bytes=16384, trusted_proxies=["127.0.0.1"])
    config = WorkerConfig(
        partial(load_app, str(target)), with_shared_keys(settings), workers=2, **uvicorn_options(settings)
    )
    received = pickle.loads(pickle.dumps(config))  # what uvicorn's spawned worker receives
    received.load()
    assert issubclass(received.http_protocol_class, BoundedHttpToolsProtocol)
    assert received.http_protocol_class.max_header_bytes == 16384
    assert received.proxy_headers and received.forwarded_allow_ips == ["127.0.0.1"]
    assert type(received.loaded_app).__name__ == "ProxyHeadersMiddleware"
    assert received.app.store is not None  # Bastion's own application, its store opened in the worker


def test_a_worker_whose_settings_are_refused_stops_the_supervisor(tmp_path, capsys):
    target = tmp_path / "server.py"
    target.write_text("from bastion import App\napp = App('in-a-worker')\n")
    blocked = tmp_path / "a-file"
    blocked.write_text("")
    settings = Settings.load(
        env={},
        store={"path": str(blocked / "bastion.db")},
        authorization_server={"enabled": True, "dev_login": True},
    )
    config = WorkerConfig(partial(load_app, str(target)), settings, workers=2, **uvicorn_options(settings))
    with pytest.raises(SystemExit) as stopped:
        config.load()
    assert stopped.value.code == uvicorn.config.STARTUP_FAILURE  # not restarted over and over
    assert "bastion: refusing to start:\nstore: sqlite at" in capsys.readouterr().err
