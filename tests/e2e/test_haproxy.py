"""examples/haproxy.cfg as shipped: HAProxy accepts it, and two `bastion serve` processes sharing one SQLite file
serve one OAuth flow and tool calls behind it, round robin, TLS ending at the proxy."""

from __future__ import annotations

import secrets
import ssl

import httpx
import pytest

from tests.oauth.conftest import REDIRECT

from .calls import pid_call, served_by
from .conftest import bastion_server, free_port
from .haproxy import check, example_env, proxy
from .test_workers import SERVER, grant

pytestmark = pytest.mark.e2e


def test_haproxy_accepts_the_example(tmp_path):
    done = check(example_env(tmp_path, 8443, [8001, 8002]))
    assert done.returncode == 0 and "Configuration file is valid" in done.stdout + done.stderr, done.stderr
    # Without its site values it is refused, not started with holes in it.
    refused = check({"MCP_LISTEN": "127.0.0.1:8443"})
    assert refused.returncode != 0 and "missing certificate" in refused.stderr


async def test_two_instances_on_one_sqlite_file_behind_haproxy(tmp_path):
    listen, ports = free_port(), [free_port(), free_port()]
    env = example_env(tmp_path, listen, ports)
    trust = ssl.create_default_context(cafile=tmp_path / "trust.pem")
    shared = {
        "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
        "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
        "BASTION_STORE__PATH": str(tmp_path / "bastion.db"),  # one file, both processes
        "BASTION_STATE_SECRET": secrets.token_urlsafe(32),
        "BASTION_AUTHORIZATION_SERVER__COOKIE_SECRET": secrets.token_urlsafe(32),
        "BASTION_PUBLIC_URL": f"https://localhost:{listen}",
        "BASTION_TRUSTED_PROXIES": "127.0.0.1",
        "BASTION_JSON_RESPONSE": "true",
    }
    with (
        bastion_server(SERVER, env=shared, port=ports[0]),
        bastion_server(SERVER, env=shared, port=ports[1]),
        proxy(env, tmp_path / "trust.pem", listen) as base,
    ):
        async with httpx.AsyncClient(verify=trust, timeout=30) as http:
            registered = await http.post(
                f"{base}/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
            )
            assert registered.status_code == 201, registered.text
            client_id = registered.json()["client_id"]
            # Round robin: every request of the sign-in lands on the other instance than the one before.
            tokens = await grant(base, client_id, verify=trust)
            pids = set()
            for _ in range(4):
                answer = await http.post(f"{base}/mcp", **pid_call(tokens["access_token"], "haproxy-test"))
                pids.add(served_by(answer))
            assert len(pids) == 2  # both instances served the one token
            # The refresh token rotates on whichever instance, and the old one is spent on both.
            form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
            renewed = await http.post(f"{base}/token", data=form)
            assert renewed.status_code == 200, renewed.text
            again = await http.post(f"{base}/token", data=form)
            assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
