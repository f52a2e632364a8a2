"""A real Prometheus server (Debian's) scrapes a real `bastion serve` and a PromQL query returns the tool calls the
test made: with a bearer token on the MCP port, and on the metrics port the parent of --workers serves, where
every worker's calls add up."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.oauth.conftest import REDIRECT
from tests.processes import stop
from tests.waiting import DEADLINE_SECONDS, free_port, wait_until

from .calls import pid_call, served_by
from .conftest import bastion_server
from .test_workers import SERVER, grant, sqlite_env

pytestmark = pytest.mark.e2e
TOKEN = "p8Rk2mXq7LzW4nVb9TcY3hJd6GsF1aQe5uNo0iKx"
CALLS = 7
QUERY = 'sum(mcp_server_operation_duration_seconds_count{mcp_method_name="tools/call",gen_ai_tool_name="pid"})'


@contextlib.contextmanager
def prometheus(tmp_path: Path, target: str, metrics_path: str, token: str | None = None) -> Iterator[str]:
    """Prometheus scraping `target` every second, on a free port, its data in tmp_path; yields its URL."""
    binary = shutil.which("prometheus")
    assert binary, "Debian's prometheus is missing: scripts/setup installs it"
    port = free_port()
    auth = ""
    if token is not None:
        (tmp_path / "scrape-token").write_text(token)
        auth = f"    authorization:\n      credentials_file: {tmp_path / 'scrape-token'}\n"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: bastion\n"
        f"    metrics_path: {metrics_path}\n{auth}"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: _ready(url, process, tmp_path), f"prometheus ready at {url}")
        yield url
    finally:
        stop(process)
        log.close()


def _ready(url: str, process: subprocess.Popen, tmp_path: Path) -> bool:
    if process.poll() is not None:
        raise RuntimeError(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()[-2000:]}")
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/-/ready", timeout=2).status_code == 200
    return False


def query_until(url: str, query: str, expected: float) -> None:
    """Ask Prometheus until the query returns `expected` (scrapes come every second); fails with the last answer."""
    last = None
    deadline = time.monotonic() + DEADLINE_SECONDS
    while time.monotonic() < deadline:
        answer = httpx.get(f"{url}/api/v1/query", params={"query": query}, timeout=5).json()
        assert answer["status"] == "success", answer
        result = answer["data"]["result"]
        last = float(result[0]["value"][1]) if result else None
        if last == expected:
            return
        time.sleep(0.25)  # poll: Prometheus scrapes once a second
    targets = httpx.get(f"{url}/api/v1/targets", timeout=5).json()["data"]["activeTargets"]
    raise AssertionError(
        f"{query} = {last}, not {expected}; targets: {[(t['health'], t['lastError']) for t in targets]}"
    )


async def calls(url: str, count: int, tmp_path: Path) -> set[int]:
    """`count` pid calls, each on a new connection; the processes that served them."""
    base = url.removesuffix("/mcp")
    async with httpx.AsyncClient(timeout=30) as http:
        registered = await http.post(
            f"{base}/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
        )
    tokens = await grant(base, registered.json()["client_id"])
    pids = set()
    fresh = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=30, limits=fresh) as http:
        for _ in range(count):
            pids.add(served_by(await http.post(url, **pid_call(tokens["access_token"], "prometheus-test"))))
    return pids


async def test_prometheus_scrapes_the_mcp_port_with_its_token_and_counts_the_tool_calls(tmp_path):
    env = sqlite_env(
        tmp_path,
        BASTION_METRICS__ENABLED="true",
        BASTION_METRICS__TOKEN_ENV="TEST_SCRAPE_TOKEN",
        BASTION_METRICS__ALLOW_FROM="",  # nobody without the token, not even this machine
        TEST_SCRAPE_TOKEN=TOKEN,
    )
    with bastion_server(SERVER, env=env) as url:
        base = url.removesuffix("/mcp")
        assert httpx.get(f"{base}/metrics").status_code == 401
        await calls(url, CALLS, tmp_path)
        with prometheus(tmp_path, base.removeprefix("http://"), "/metrics", TOKEN) as server:
            query_until(server, QUERY, CALLS)
            query_until(server, 'sum(bastion_security_events_total{type="token.issued"})', 1)
            query_until(server, 'sum(bastion_authorization_decisions_total{decision="allowed"})', CALLS)


async def test_the_parent_of_workers_serves_the_metrics_port_adding_up_every_worker(tmp_path):
    metrics_port = free_port()
    env = sqlite_env(tmp_path, BASTION_METRICS__ENABLED="true", BASTION_METRICS__PORT=str(metrics_port))
    with bastion_server(SERVER, "--workers", "2", env=env) as url:
        assert httpx.get(f"{url.removesuffix('/mcp')}/metrics").status_code == 404  # not on the MCP port
        pids: set[int] = set()
        total = 0
        while len(pids) < 2 and total < 60:  # new connections until both workers have served some
            pids |= await calls(url, CALLS, tmp_path)
            total += CALLS
        assert len(pids) == 2, f"one worker served all {total} calls"
        with prometheus(tmp_path, f"127.0.0.1:{metrics_port}", "/metrics") as server:
            query_until(server, QUERY, total)
            by_pid = httpx.get(f"{server}/api/v1/query", params={"query": QUERY.replace("sum(", "count(")})
            assert by_pid.json()["data"]["result"][0]["value"][1] == "1"  # one series: the workers added up
