"""SIGKILL the server again and again during bursts of token exchanges on the SQLite store.

Afterwards every token a client received works, the database holds no live token a client did not receive,
and SQLite's integrity check passes."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys

import httpx
import pytest

from tests.browser import walk
from tests.messages import initialize
from tests.oauth.conftest import REDIRECT, challenge, code_exchange
from tests.waiting import healthy, wait_until

from .conftest import ROOT, free_port

pytestmark = pytest.mark.e2e
FEATURES = ROOT / "tests" / "e2e" / "servers" / "features.py"
ROUNDS = 5
CODES_PER_ROUND = 24


def start(db: str, port: int) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
        "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
        "BASTION_STORE__PATH": db,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "bastion.cli", "serve", str(FEATURES), "--port", str(port)],
        env=env,
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    wait_until(lambda: healthy(f"http://127.0.0.1:{port}") or process.poll() is not None, "the server starting")
    assert process.poll() is None, f"the server exited with {process.returncode}"
    return process


def kill(process: subprocess.Popen[bytes]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


async def new_code(http: httpx.AsyncClient, base: str, client_id: str) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "state": "s",
        "code_challenge": challenge(),
        "code_challenge_method": "S256",
    }
    back = await walk(http, str(httpx.URL(f"{base}/authorize", params=params)), "crash")
    return re.search(r"code=([^&]+)", back.headers["location"]).group(1)


async def exchange(http: httpx.AsyncClient, base: str, client_id: str, code: str) -> httpx.Response:
    return await http.post(f"{base}/token", data=code_exchange(code, client_id, resource=None))


async def test_sigkill_during_token_bursts_loses_nothing_committed(tmp_path):
    db, port = str(tmp_path / "crash.db"), free_port()
    base = f"http://127.0.0.1:{port}"
    rng = random.Random(1234)
    received: list[str] = []  # access tokens clients actually got
    revoked_by_replay = 0
    process = start(db, port)
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            registered = await http.post(
                f"{base}/register", json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none"}
            )
            client_id = registered.json()["client_id"]
            for _ in range(ROUNDS):
                codes = [await new_code(http, base, client_id) for _ in range(CODES_PER_ROUND)]
                burst = [asyncio.create_task(exchange(http, base, client_id, c)) for c in codes]
                await asyncio.sleep(rng.uniform(0.005, 0.06))
                kill(process)
                outcomes = await asyncio.gather(*burst, return_exceptions=True)
                process = start(db, port)
                for code, outcome in zip(codes, outcomes, strict=True):
                    if isinstance(outcome, httpx.Response) and outcome.status_code == 200:
                        received.append(outcome.json()["access_token"])
                        continue
                    # The answer was lost: the code either never got through (it works now) or was
                    # redeemed before the kill (then this is a replay, which revokes what it issued).
                    retry = await exchange(http, base, client_id, code)
                    if retry.status_code == 200:
                        received.append(retry.json()["access_token"])
                    else:
                        assert retry.json()["error"] == "invalid_grant"
                        revoked_by_replay += 1
            assert received, "no exchange completed at all"
            for token in received:
                probe = await http.post(
                    f"{base}/mcp",
                    headers={
                        "authorization": f"Bearer {token}",
                        "content-type": "application/json",
                        "accept": "application/json, text/event-stream",
                    },
                    json=initialize(),
                )
                assert probe.status_code == 200, "a token a client received does not work"
    finally:
        kill(process)

    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        live = {row[0].rsplit(":", 1)[1] for row in conn.execute("SELECT key FROM records WHERE key LIKE 'access:%'")}
    assert live == {hashlib.sha256(t.encode()).hexdigest() for t in received}
    assert len(received) + revoked_by_replay == ROUNDS * CODES_PER_ROUND
