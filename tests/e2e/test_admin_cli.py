"""`bastion admin` against a running server's SQLite file: an operator lists clients and grants, revokes a grant
and the running server refuses its token within a second (the file's bus), deletes a client; each action is in
the audit trail with who did it; mistakes end in one line."""

from __future__ import annotations

import asyncio
import getpass
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
import pytest

from tests.oauth.conftest import REDIRECT

from .calls import pid_call
from .conftest import bastion_server
from .test_workers import SERVER, grant, sqlite_env

pytestmark = pytest.mark.e2e


def bastion(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "bastion.cli", *args]
    return subprocess.run(command, env={**os.environ, **env}, cwd=cwd, capture_output=True, text=True, timeout=60)


def lines(done: subprocess.CompletedProcess[str]) -> list[dict]:
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


async def test_an_operator_revokes_a_grant_and_the_running_server_refuses_its_token_at_once(tmp_path):
    env = sqlite_env(tmp_path, BASTION_JSON_RESPONSE="true")
    with bastion_server(SERVER, env=env) as url:
        base = url.removesuffix("/mcp")
        async with httpx.AsyncClient(timeout=30) as http:
            registered = await http.post(
                f"{base}/register",
                json={"redirect_uris": [REDIRECT], "token_endpoint_auth_method": "none", "client_name": "Ops test"},
            )
            client_id = registered.json()["client_id"]
            tokens = await grant(base, client_id)
            assert (await http.post(url, **pid_call(tokens["access_token"], "admin-test"))).status_code == 200

            [client] = lines(bastion(env, tmp_path, "admin", "--json", "clients", "list"))
            assert client["client_id"] == client_id and client["client_name"] == "Ops test"
            assert client["confidential"] is False and "secret_hash" not in client
            [listed] = lines(bastion(env, tmp_path, "admin", "--json", "grants", "list", "--user", "dev:revoked-user"))
            assert listed["client_id"] == client_id and "props" not in listed
            assert lines(bastion(env, tmp_path, "admin", "--json", "grants", "list", "--user", "dev:nobody")) == []
            table = bastion(env, tmp_path, "admin", "grants", "list")
            assert table.stdout.splitlines()[0].split() == ["grant_id", "subject", "client_id", "scopes", "created_at"]
            assert listed["grant_id"] in table.stdout

            revoked_at = time.monotonic()
            done = bastion(env, tmp_path, "admin", "grants", "revoke", listed["grant_id"])
            assert (
                done.returncode == 0
                and done.stdout == f"grant {listed['grant_id']} revoked, with every token it issued\n"
            )
            while (answer := await http.post(url, **pid_call(tokens["access_token"], "admin-test"))).status_code == 200:
                assert time.monotonic() - revoked_at < 5, "the running server kept accepting a revoked grant's token"
                await asyncio.sleep(0.02)
            assert answer.status_code == 401
            refreshed = await http.post(
                f"{base}/token",
                data={"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"], "client_id": client_id},
            )
            assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"

        missing = bastion(env, tmp_path, "admin", "grants", "revoke", "no-such-grant")
        assert missing.returncode == 2 and missing.stderr.splitlines() == [
            "bastion: no grant 'no-such-grant': `bastion admin grants list` shows them"
        ]
        kept = bastion(env, tmp_path, "admin", "clients", "revoke", "--", client_id)
        assert kept.stdout == f"client {client_id}: 0 grant(s) revoked; it stays registered\n"
        deleted = bastion(env, tmp_path, "admin", "clients", "delete", "--", client_id)  # as the help says
        assert deleted.stdout == f"client {client_id} deleted; 0 grant(s) revoked\n"
        assert lines(bastion(env, tmp_path, "admin", "--json", "clients", "list")) == []

    recent = lines(bastion(env, tmp_path, "audit", "tail", "-n", "50", "--json"))
    events = [e for e in recent if e["type"].startswith("admin.")]  # the server's own events come in between
    by = f"cli:{getpass.getuser()}"
    assert [(e["type"], e["details"]["by"]) for e in events] == [
        ("admin.grant.revoked", by),
        ("admin.client.revoked", by),
        ("admin.client.deleted", by),
    ]
    assert events[0]["grant_id"] == listed["grant_id"] and events[0]["subject"] == "dev:revoked-user"
    assert events[2]["details"]["grants_revoked"] == 0 and events[2]["client_id"] == client_id
    assert bastion(env, tmp_path, "audit", "verify").returncode == 0
    # Searching: by type prefix and client, newest last; a time that is not one ends in one line.
    found = lines(bastion(env, tmp_path, "audit", "search", "--type", "admin.client", "--client", client_id, "--json"))
    assert [e["type"] for e in found] == ["admin.client.revoked", "admin.client.deleted"]
    assert lines(bastion(env, tmp_path, "audit", "search", "--since", "2999-01-01", "--json")) == []
    table = bastion(env, tmp_path, "audit", "search", "--subject", "dev:revoked-user", "-n", "2")
    assert table.returncode == 0 and len(table.stdout.splitlines()) == 2
    bad = bastion(env, tmp_path, "audit", "search", "--since", "yesterday")
    assert bad.returncode == 2 and bad.stderr.splitlines() == [
        "bastion: --since 'yesterday' is not a date or time: write 2026-12-01 or 2026-12-01T08:00Z"
    ]
