"""/metrics: what a whole OAuth session and its tool calls leave in Prometheus' format, and who may read it.

The numbers are read back with prometheus_client's own parser, as Prometheus would read them."""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.clients import BASE, local_settings
from tests.mcp.conftest import MODERN, build_app, modern_body, modern_headers
from tests.oauth.conftest import register, settings, tokens_for

TOKEN_ENV = "BASTION_TEST_METRICS_TOKEN"
SCRAPER_TOKEN = "Vq3x9TzL0pWm7RkA2sYd5hNc8JfB4uGe6iQoE1tZ"


def metrics_settings(**metrics):
    base = settings()
    return base.model_copy(update={"metrics": base.metrics.model_copy(update={"enabled": True, **metrics})})


def client_for(app, configured, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app.asgi(configured), client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url=BASE)


def samples(text: str) -> dict[tuple[str, frozenset], float]:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


async def call(client, token: str, tool: str, arguments: dict | None = None) -> httpx.Response:
    return await client.post(
        "/mcp",
        headers={**modern_headers("tools/call", tool), "authorization": f"Bearer {token}"},
        json=modern_body("tools/call", {"name": tool, "arguments": arguments or {}}),
    )


def operation(tool: str, error: str = "") -> dict[str, str]:
    return {
        "mcp_method_name": "tools/call",
        "gen_ai_tool_name": tool,
        "gen_ai_prompt_name": "",
        "error_type": error,
        "mcp_protocol_version": MODERN,
    }


async def test_a_session_and_its_calls_are_counted_by_method_tool_outcome_and_reason():
    async with client_for(build_app(), metrics_settings()) as client:
        tokens = await tokens_for(client, await register(client))
        access = tokens["access_token"]
        for _ in range(3):
            assert (await call(client, access, "add", {"a": 1, "b": 2})).status_code == 200
        assert (await call(client, access, "fail_politely")).json()["result"]["isError"] is True
        assert (await call(client, access, "crash")).json()["result"]["isError"] is True
        # Names a client makes up never become label values: one label set for all of them.
        for n in range(20):
            assert (await call(client, access, f"made-up-{n}")).status_code == 400
        assert (await call(client, "forged", "add")).status_code == 401
        refreshed = await client.post(
            "/token",
            data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": "x"},
        )
        assert refreshed.status_code in (400, 401)
        scraped = await client.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    assert scraped.headers["cache-control"] == "no-store"
    text = scraped.text
    found = samples(text)
    count = "mcp_server_operation_duration_seconds_count"
    assert value(found, count, **operation("add")) == 3
    assert value(found, count, **operation("fail_politely", "tool_error")) == 1
    assert value(found, count, **operation("crash", "tool_error")) == 1
    assert value(found, count, **operation("", "-32602")) == 20
    assert "made-up" not in text and access not in text and tokens["refresh_token"] not in text
    buckets = [
        v for (name, labels), v in found.items() if name.endswith("_bucket") and labels >= set(operation("add").items())
    ]
    assert max(buckets) == 3  # the +Inf bucket holds every call

    decisions = "bastion_authorization_decisions_total"
    assert value(found, decisions, decision="allowed", reason="valid_token") == 25
    assert value(found, decisions, decision="refused", reason="invalid_token") == 1
    events = "bastion_security_events_total"
    assert value(found, events, type="client.registered", outcome="success") == 1
    assert value(found, events, type="token.issued", outcome="success") == 1
    assert value(found, events, type="token.refused", outcome="failure") == 1
    assert value(found, events, type="token.invalid", outcome="failure") == 1
    store_ops = [
        v
        for (name, labels), v in found.items()
        if name == "bastion_store_operation_duration_seconds_count" and ("backend", "memory") in labels
    ]
    assert sum(store_ops) >= 5  # registration, codes, tokens: each a commit or a read


async def test_sessions_of_2025_clients_are_a_gauge_that_goes_down_when_they_end():
    app = build_app()
    configured = local_settings(metrics={"enabled": True})
    async with client_for(app, configured) as client:
        opened = []
        for _ in range(3):
            answer = await client.post(
                "/mcp",
                headers={"accept": "application/json, text/event-stream"},
                json={
                    "jsonrpc": "2.0",
                    "id": 1,
                    "method": "initialize",
                    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t"}},
                },
            )
            opened.append(answer.headers["mcp-session-id"])
        assert value(samples((await client.get("/metrics")).text), "bastion_mcp_sessions") == 3
        ended = await client.delete("/mcp", headers={"mcp-session-id": opened[0], "mcp-protocol-version": "2025-11-25"})
        assert ended.status_code in (200, 204)
        assert value(samples((await client.get("/metrics")).text), "bastion_mcp_sessions") == 2


@pytest.mark.parametrize("address", ["203.0.113.9", "10.1.2.3", "::ffff:8.8.8.8"])
async def test_other_addresses_are_refused_and_learn_nothing(address):
    async with client_for(build_app(), local_settings(metrics={"enabled": True}), address) as client:
        refused = await client.get("/metrics")
        posted = await client.post("/metrics", content=b"x")
    assert refused.status_code == 403 and "mcp_server" not in refused.text and "python_" not in refused.text
    assert "metrics.allow_from" in refused.text and "www-authenticate" not in refused.headers
    assert posted.status_code == 405


async def test_a_scraper_with_the_token_is_let_in_from_anywhere_and_a_wrong_token_is_not(monkeypatch):
    monkeypatch.setenv(TOKEN_ENV, SCRAPER_TOKEN)
    configured = local_settings(metrics={"enabled": True, "token_env": TOKEN_ENV, "allow_from": []})
    app = build_app()
    async with client_for(app, configured, "203.0.113.9") as client:
        good = await client.get("/metrics", headers={"authorization": f"Bearer {SCRAPER_TOKEN}"})
        for wrong in ("Bearer " + SCRAPER_TOKEN[:-1] + "x", "Basic " + SCRAPER_TOKEN, f"Bearer {SCRAPER_TOKEN} "[:-2]):
            bad = await client.get("/metrics", headers={"authorization": wrong})
            assert bad.status_code == 401 and bad.headers["www-authenticate"] == 'Bearer realm="metrics"'
            assert "mcp_server" not in bad.text
        none = await client.get("/metrics")
    assert good.status_code == 200 and "mcp_server_operation_duration_seconds" in good.text
    assert none.status_code == 401
    async with client_for(app, configured, "127.0.0.1") as local:  # allow_from = []: not even this machine
        assert (await local.get("/metrics")).status_code == 401


def test_start_up_mistakes_name_the_setting(monkeypatch):
    from bastion.settings import SettingsError

    monkeypatch.setenv(TOKEN_ENV, "short")
    with pytest.raises(SettingsError) as weak:
        local_settings(metrics={"enabled": True, "token_env": TOKEN_ENV}).check()
    assert "metrics token in BASTION_TEST_METRICS_TOKEN (named by metrics.token_env) is too short" in str(weak.value)
    assert "short" not in str(weak.value).replace("too short", "")
    with pytest.raises(SettingsError, match=r"metrics\.port is the MCP port"):
        local_settings(metrics={"enabled": True, "port": 8000}).check()
    with pytest.raises(Exception, match="not an IP address or network"):
        local_settings(metrics={"enabled": True, "allow_from": ["*"]})


async def test_metrics_off_means_no_route_and_nothing_measured():
    async with client_for(build_app(), local_settings()) as client:
        assert (await client.get("/metrics")).status_code == 404


async def test_a_metrics_port_of_its_own_serves_them_and_stops_with_the_server(monkeypatch):
    import socket

    from tests.test_compose import lifespan, running
    from tests.waiting import free_port

    monkeypatch.setenv(TOKEN_ENV, SCRAPER_TOKEN)
    port = free_port()
    configured = local_settings(metrics={"enabled": True, "port": port, "token_env": TOKEN_ENV, "allow_from": []})
    surface = build_app().asgi(configured)
    async with running(surface), httpx.AsyncClient() as http:
        url = f"http://127.0.0.1:{port}/metrics"
        assert (await http.get(url)).status_code == 401  # allow_from = []: the token only
        good = await http.get(url, headers={"authorization": f"Bearer {SCRAPER_TOKEN}"})
        assert good.status_code == 200 and "mcp_server_operation_duration_seconds" in good.text
        assert (await http.post(url, headers={"authorization": f"Bearer {SCRAPER_TOKEN}"})).status_code == 405
    with socket.socket() as probe:  # the port was given back (no listener left; closed connections may linger)
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(("127.0.0.1", port))
        probe.listen()

    with socket.socket() as taken:
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        taken.bind(("127.0.0.1", port))
        taken.listen()
        refused = await lifespan(build_app().asgi(configured), "startup")
    assert refused[0]["type"] == "lifespan.startup.failed"
    assert refused[0]["message"] == (
        f"metrics: cannot listen on 127.0.0.1:{port}: Address already in use; choose another metrics.port"
    )
