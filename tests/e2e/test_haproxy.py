"""examples/haproxy.cfg as shipped: HAProxy accepts it, and two `bastion serve` processes sharing one SQLite file
serve one OAuth flow and tool calls behind it, round robin, TLS ending at the proxy."""

from __future__ import annotations

import datetime
import os
import secrets
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.oauth.conftest import REDIRECT
from tests.processes import stop
from tests.waiting import wait_until

from .conftest import ROOT, bastion_server, free_port
from .test_workers import SERVER, grant

pytestmark = pytest.mark.e2e
EXAMPLE = ROOT / "examples" / "haproxy.cfg"


def haproxy() -> str:
    found = shutil.which("haproxy") or next((p for p in ("/usr/sbin/haproxy",) if Path(p).exists()), None)
    assert found, "HAProxy is not installed: run scripts/setup (it installs Debian's haproxy)"
    return found


def certificate(directory: Path) -> dict[str, Path]:
    """A throwaway self-signed certificate for localhost: HAProxy's PEM (chain and key) and the client's trust."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    paths = {"haproxy": directory / "mcp.pem", "trust": directory / "trust.pem"}
    paths["haproxy"].write_bytes(pem + private)
    paths["trust"].write_bytes(pem)
    return paths


def example_env(tmp_path: Path, listen: int, servers: list[int]) -> dict[str, str]:
    return {
        "MCP_CERT": str(certificate(tmp_path)["haproxy"]),
        "MCP_LISTEN": f"127.0.0.1:{listen}",
        "MCP_HOST": "localhost",
        **{f"MCP_SERVER_{i}": f"127.0.0.1:{port}" for i, port in enumerate(servers, 1)},
    }


def check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [haproxy(), "-c", "-f", str(EXAMPLE)],
        env={"PATH": os.environ.get("PATH", "")} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_haproxy_accepts_the_example(tmp_path):
    done = check(example_env(tmp_path, 8443, [8001, 8002]))
    assert done.returncode == 0 and "Configuration file is valid" in done.stdout + done.stderr, done.stderr
    # Without its site values it is refused, not started with holes in it.
    refused = check({"MCP_LISTEN": "127.0.0.1:8443"})
    assert refused.returncode != 0 and "missing certificate" in refused.stderr


@contextmanager
def proxy(env: dict[str, str], trust: Path, listen: int) -> Iterator[str]:
    process = subprocess.Popen(
        [haproxy(), "-db", "-f", str(EXAMPLE)],
        env={"PATH": os.environ.get("PATH", "")} | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"https://localhost:{listen}"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {process.returncode}: {process.stdout.read().decode()}")
        try:
            return (
                httpx.get(f"{base}/healthz", verify=ssl.create_default_context(cafile=trust), timeout=2).status_code
                == 200
            )
        except httpx.HTTPError:
            return False

    try:
        wait_until(up, f"haproxy answering on {base}")
        yield base
    finally:
        stop(process)
        if process.stdout:
            process.stdout.close()


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
                answer = await http.post(
                    f"{base}/mcp",
                    headers={
                        "authorization": f"Bearer {tokens['access_token']}",
                        "accept": "application/json, text/event-stream",
                        "mcp-protocol-version": "2026-07-28",
                        "mcp-method": "tools/call",
                        "mcp-name": "pid",
                    },
                    json={
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "tools/call",
                        "params": {
                            "name": "pid",
                            "_meta": {
                                "io.modelcontextprotocol/protocolVersion": "2026-07-28",
                                "io.modelcontextprotocol/clientInfo": {"name": "haproxy-test", "version": "1"},
                                "io.modelcontextprotocol/clientCapabilities": {},
                            },
                        },
                    },
                )
                assert answer.status_code == 200, answer.text
                pids.add(int(answer.json()["result"]["content"][0]["text"]))
            assert len(pids) == 2  # both instances served the one token
            # The refresh token rotates on whichever instance, and the old one is spent on both.
            form = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id}
            renewed = await http.post(f"{base}/token", data=form)
            assert renewed.status_code == 200, renewed.text
            again = await http.post(f"{base}/token", data=form)
            assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
