"""HAProxy in front of Bastion instances, as examples/haproxy.cfg ships: its binary, a throwaway certificate for
localhost, the environment the example reads, and the proxy process itself (started, polled, stopped)."""

from __future__ import annotations

import datetime
import os
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.processes import stop
from tests.waiting import wait_until

from .conftest import ROOT

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


def example_for(directory: Path, instances: int) -> Path:
    """The example with a `server` line per instance, as its comment says to add (it ships with two)."""
    text = EXAMPLE.read_text()
    last = 'server bastion2 "${MCP_SERVER_2}"'
    assert text.rstrip().endswith(last), "examples/haproxy.cfg no longer ends with its second server line"
    more = "".join(f'\n    server bastion{i} "${{MCP_SERVER_{i}}}"' for i in range(3, instances + 1))
    path = directory / "haproxy.cfg"
    path.write_text(text.rstrip() + more + "\n")
    return path


def check(env: dict[str, str], config: Path = EXAMPLE) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [haproxy(), "-c", "-f", str(config)],
        env={"PATH": os.environ.get("PATH", "")} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def proxy(env: dict[str, str], trust: Path, listen: int, config: Path = EXAMPLE) -> Iterator[str]:
    """HAProxy running `config`; yields its https base URL once it answers /healthz, stops it afterwards."""
    log = trust.parent / "haproxy.log"  # a file, not a pipe: its request log must never fill up and block it
    with log.open("wb") as output:
        process = subprocess.Popen(
            [haproxy(), "-db", "-f", str(config)],
            env={"PATH": os.environ.get("PATH", "")} | env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    base = f"https://localhost:{listen}"

    def up() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"haproxy exited with {process.returncode}: {log.read_text(errors='replace')}")
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
