"""The worker API, mirroring Arcade's worker protocol, with forged, expired and exp-less tokens."""

import base64
import hashlib
import hmac
import json
import time

import pytest

from bastion import App, Context, ToolError
from bastion.settings import Settings
from bastion.worker import auth
from tests.answers import bearer_challenge
from tests.clients import asgi_client, local_settings

SECRET = "6AvYor5_y_SErk5ePiP1rLCqAMFIXRf4LAS_EIV-YSw"  # secrets.token_urlsafe(32), for these tests only


def worker_settings(**worker) -> Settings:
    return local_settings(worker={"secret_env": "WORKER_SECRET", **worker}, store={"backend": "memory"})


def build(ran: list[str] | None = None) -> App:
    """Four tools; `add` notes each run in `ran`."""
    app = App("Notes", "1.4.0")
    ran = [] if ran is None else ran

    @app.tool
    def add(a: int, b: int = 2) -> int:
        """Add two integers.

        Args:
            a: The first.
            b: The second.
        """
        ran.append("add")
        return a + b

    @app.tool(requires_secrets=["NOTES_KEY"])
    def key_length(ctx: Context) -> int:
        """Length of the declared secret."""
        return len(ctx.secret("NOTES_KEY"))

    @app.tool(requires_upstream="github", upstream_scopes=["repo"])
    async def github_token(ctx: Context) -> str:
        """Echoes the first characters of the GitHub token it was given."""
        return (await ctx.upstream_token("github"))[:4]

    @app.tool
    def fails() -> str:
        """Always fails."""
        raise ToolError("out of ink")

    return app


def token(claims: dict | None = None, header: dict | None = None, secret: str = SECRET) -> str:
    def b64(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    now = int(time.time())
    body = {"aud": "worker", "ver": "1", "iat": now, "exp": now + 60, **(claims or {})}
    head = b64(header or {"alg": "HS256", "typ": "JWT"})
    signing = f"{head}.{b64(body)}"
    signature = hmac.new(secret.encode(), signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{base64.urlsafe_b64encode(signature).rstrip(b'=').decode()}"


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
async def worker(monkeypatch, ran):
    monkeypatch.setenv("WORKER_SECRET", SECRET)
    settings = worker_settings()
    settings.check()
    async with asgi_client(build(ran), settings) as client:
        yield client


def bearer(value: str | None = None) -> dict[str, str]:
    return {"authorization": f"Bearer {value or token()}"}


async def invoke(client, name: str, inputs: dict, context: dict | None = None, headers=None):
    body = {
        "execution_id": "exec-1",
        "tool": {"name": name, "toolkit": "Notes", "version": "1.4.0"},
        "inputs": inputs,
        "context": context or {},
    }
    return await client.post("/worker/tools/invoke", json=body, headers=headers or bearer())


async def test_health_needs_no_token_and_tools_are_arcade_definitions(worker):
    assert (await worker.get("/worker/health")).json() == {"status": "ok", "tool_count": 4}
    anonymous = await worker.get("/worker/tools")
    assert anonymous.status_code == 401 and anonymous.json() == {"error": "a worker token is required"}
    assert anonymous.headers["www-authenticate"] == 'Bearer realm="worker"'

    definitions = {d["name"]: d for d in (await worker.get("/worker/tools", headers=bearer())).json()}
    add = definitions["add"]
    assert add["fully_qualified_name"] == "Notes.add" and add["toolkit"]["version"] == "1.4.0"
    assert add["input"]["parameters"] == [
        {
            "name": "a",
            "required": True,
            "description": "The first.",
            "value_schema": {"val_type": "integer"},
            "inferrable": True,
        },
        {
            "name": "b",
            "required": False,
            "description": "The second.",
            "value_schema": {"val_type": "integer"},
            "inferrable": True,
        },
    ]
    assert add["output"]["value_schema"] == {"val_type": "integer"}
    assert definitions["key_length"]["requirements"]["secrets"] == [{"key": "NOTES_KEY"}]
    assert definitions["github_token"]["requirements"]["authorization"]["oauth2"] == {"scopes": ["repo"]}


async def test_invocations_in_arcade_shapes(worker):
    done = (await invoke(worker, "add", {"a": 40})).json()
    assert done["execution_id"] == "exec-1" and done["success"] is True and done["output"] == {"value": 42}
    assert isinstance(done["duration"], float) and done["finished_at"].endswith("+00:00")
    secret = await invoke(
        worker, "key_length", {}, {"secrets": [{"key": "NOTES_KEY", "value": "abcdef"}, {"key": "OTHER", "value": "x"}]}
    )
    assert secret.json()["output"] == {"value": 6}
    github = await invoke(
        worker, "github_token", {}, {"authorization": {"token": "gho_1234", "user_info": {}}, "user_id": "u1"}
    )
    assert github.json()["output"] == {"value": "gho_"}
    failed = (await invoke(worker, "fails", {})).json()
    assert failed["success"] is False and failed["output"]["error"] == {
        "message": "out of ink",
        "kind": "TOOL_RUNTIME_FATAL",
        "can_retry": False,
    }
    bad = (await invoke(worker, "add", {"a": "forty"})).json()
    assert bad["success"] is False and bad["output"]["error"]["kind"] == "TOOL_RUNTIME_BAD_INPUT_VALUE"
    missing_secret = (await invoke(worker, "key_length", {})).json()
    assert missing_secret["success"] is False and "NOTES_KEY" in missing_secret["output"]["error"]["message"]


async def test_unknown_tools_and_malformed_requests(worker, ran):
    unknown = await invoke(worker, "nope", {})
    assert unknown.status_code == 404 and unknown.json() == {"error": "tool Notes.nope not found"}
    other_kit = await worker.post(
        "/worker/tools/invoke",
        headers=bearer(),
        json={"execution_id": "e", "tool": {"name": "add", "toolkit": "Other"}, "inputs": {}},
    )
    assert other_kit.status_code == 404 and other_kit.json() == {"error": "tool Other.add not found"}
    for body in (
        b"{",
        b"[]",
        b'{"tool": 5}',
        b'{"execution_id": "e", "tool": {"name": "add"}, "inputs": [1]}',
    ):
        response = await worker.post("/worker/tools/invoke", content=body, headers=bearer())
        assert response.status_code == 400, body
        assert response.json()["error"].startswith("invalid tool call request: "), body
    assert ran == []


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "not.a.jwt",
        token(secret="another-secret-" + "q" * 32),
        token(header={"alg": "none"}).rsplit(".", 1)[0] + ".",
        token(header={"alg": "HS512"}),
        token(header={"alg": "HS256", "crit": ["exp"]}),
        token(header={"alg": "HS256", "jku": "https://evil.example/keys"}, secret="evil-" + "e" * 32),
        token({"aud": "mcp"}),
        token({"ver": "2"}),
        token({"exp": int(time.time()) - 120}),
        token({"exp": None}),
        token({"nbf": int(time.time()) + 600}),
        token({"exp": int(time.time()) + 86400}),  # far longer than max_token_seconds
        "a" * 10_000,
    ],
)
async def test_forged_expired_and_exp_less_tokens_are_refused(worker, ran, forged):
    listed = await worker.get("/worker/tools", headers={"authorization": f"Bearer {forged}"})
    called = await invoke(worker, "add", {"a": 1}, headers={"authorization": f"Bearer {forged}"})
    for response in (listed, called):
        assert response.status_code == 401 and SECRET not in response.text
        error = response.json()["error"]
        assert error.startswith("invalid worker token: ") or (forged == "" and error == "a worker token is required")
    assert ran == []  # refused before the tool ran


async def test_tokens_do_not_cross_between_worker_and_mcp(monkeypatch):
    monkeypatch.setenv("WORKER_SECRET", SECRET)
    ran: list[str] = []
    settings = local_settings(
        store={"backend": "memory"},
        worker={"secret_env": "WORKER_SECRET"},
        authorization_server={"enabled": True, "dev_login": True},
    )
    async with asgi_client(build(ran), settings) as client:
        mcp = await client.post(
            "/mcp",
            headers={**bearer(), "content-type": "application/json"},
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "add", "arguments": {"a": 1}}},
        )
        bearer_challenge(mcp, 401, "invalid_token")  # a worker token is not an MCP token
        from tests.oauth.conftest import register, tokens_for

        mcp_token = (await tokens_for(client, await register(client)))["access_token"]
        crossed = await invoke(client, "add", {"a": 1}, headers=bearer(mcp_token))
        assert crossed.status_code == 401 and crossed.json()["error"].startswith("invalid worker token: ")
        assert crossed.headers["www-authenticate"] == 'Bearer realm="worker", error="invalid_token"'

    assert ran == []


async def test_worker_only_mode_and_minted_tokens(monkeypatch):
    monkeypatch.setenv("WORKER_SECRET", SECRET)
    async with asgi_client(build(), worker_settings(only=True)) as client:
        no_mcp = await client.post("/mcp", json={})
        assert no_mcp.status_code == 404 and no_mcp.text == "Not Found"
        minted = auth.mint(SECRET, 60)
        assert (await client.get("/worker/tools", headers=bearer(minted))).status_code == 200


def test_exp_less_tokens_only_with_the_compatibility_switch():
    exp_less = token({"exp": None})
    with pytest.raises(auth.WorkerTokenError, match="exp is required"):
        auth.verify(exp_less, SECRET, 300)
    assert auth.verify(exp_less, SECRET, 300, require_exp=False)["aud"] == "worker"


async def test_each_invocation_and_refused_token_is_an_audit_event_without_secrets(worker):
    from tests.clients import store_of
    from tests.waiting import eventually

    await invoke(worker, "add", {"a": 40}, {"user_id": "u1"})
    await invoke(worker, "fails", {})
    await invoke(worker, "key_length", {}, {"secrets": [{"key": "NOTES_KEY", "value": "abcdef-secret"}]})
    for _ in range(3):  # a flood of forged tokens is sampled: one stored event says how many were left out
        await invoke(worker, "add", {"a": 1}, headers=bearer("forged"))
    store = store_of(worker)

    async def stored() -> list[dict]:
        from bastion.ops.audit import recent

        return await recent(store, 50)

    async def four() -> bool:
        return len(await stored()) == 4

    await eventually(four, "four audit events")
    events = await stored()
    assert [(e["type"], e["outcome"], e["subject"], e["details"].get("tool")) for e in events] == [
        ("worker.invoked", "success", "worker:u1", "add"),
        ("worker.invoked", "failure", "worker", "fails"),
        ("worker.invoked", "success", "worker", "key_length"),
        ("worker.refused", "failure", None, None),
    ]
    assert all(e["client_addr"] == "127.0.0.1" and e["request_id"] for e in events)
    assert "abcdef-secret" not in str(events) and "forged" not in str(events)


async def test_the_worker_brings_the_token_even_for_a_connection(monkeypatch):
    """With github declared as a connection, an engine calling the worker still supplies the user's token itself
    (context.authorization.token); without one the tool is refused: nobody at the worker API can follow a link,
    and no link is made."""
    monkeypatch.setenv("WORKER_SECRET", SECRET)
    monkeypatch.setenv("BASTION_TEST_GITHUB_SECRET", "s3cret")
    settings = local_settings(
        store={"backend": "memory"},
        worker={"secret_env": "WORKER_SECRET"},
        authorization_server={"enabled": True, "dev_login": True},
        connections=[
            {"name": "github", "preset": "github", "client_id": "gh", "client_secret_env": "BASTION_TEST_GITHUB_SECRET"}
        ],
        state_secret=SECRET,
    )
    async with asgi_client(build(), settings) as client:
        given = {"authorization": {"token": "gho_5678", "user_info": {}}, "user_id": "u1"}
        supplied = await invoke(client, "github_token", {}, given)
        assert supplied.json()["output"] == {"value": "gho_"}
        missing = (await invoke(client, "github_token", {}, {"user_id": "u1"})).json()
        assert missing["success"] is False and "cannot run" in missing["output"]["error"]["message"]
        assert "/connections/link/" not in str(missing)
        from tests.clients import records

        assert await records(client, "connlink:") == {}
