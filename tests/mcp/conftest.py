import httpx
import pytest
from pydantic import BaseModel

from bastion import App, Context, ToolError
from tests.clients import asgi_client
from tests.messages import initialize

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientInfo": {"name": "test", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {"form": {}}},
}


class Name(BaseModel):
    name: str


def build_app(ran: list[str] | None = None) -> App:
    """The test server; `add` and `ask` note in `ran` each time they run (a refused call leaves it as it was)."""
    app = App("test-server", "1.2.3")
    ran = [] if ran is None else ran

    @app.tool
    def add(a: int, b: int) -> int:
        """Add two integers."""
        ran.append("add")
        return a + b

    @app.tool
    def fail_politely() -> str:
        raise ToolError("the widget is out of stock")

    @app.tool
    def crash() -> str:
        raise RuntimeError("postgres://admin:hunter2@db/prod")

    @app.tool
    async def ask(ctx: Context, greeting: str = "hello") -> str:
        ran.append("ask")
        answer = await ctx.elicit("Who are you?", Name)
        return f"{greeting} {answer.data.name}" if answer.action == "accept" else answer.action

    @app.resource("test://doc", mime_type="text/plain")
    def doc() -> str:
        return "the doc"

    return app


@pytest.fixture
def ran() -> list[str]:
    return []


@pytest.fixture
def app(ran) -> App:
    return build_app(ran)


@pytest.fixture
async def client(app):
    async with asgi_client(app) as c:
        yield c


def modern_headers(method: str, name: str | None = None) -> dict[str, str]:
    headers = {"mcp-protocol-version": MODERN, "mcp-method": method, "accept": "application/json, text/event-stream"}
    if name is not None:
        headers["mcp-name"] = name
    return headers


def modern_body(method: str, params: dict | None = None, msg_id: int = 1) -> dict:
    return {"jsonrpc": "2.0", "id": msg_id, "method": method, "params": {**(params or {}), "_meta": META}}


ACCEPT = {"accept": "application/json, text/event-stream"}


async def open_session(client: httpx.AsyncClient) -> str:
    response = await client.post(
        "/mcp",
        headers=ACCEPT,
        json=initialize("2025-11-25"),
    )
    assert response.status_code == 200
    session_id = response.headers["mcp-session-id"]
    initialized = await client.post(
        "/mcp",
        headers={**ACCEPT, "mcp-session-id": session_id},
        json={"jsonrpc": "2.0", "method": "notifications/initialized"},
    )
    assert initialized.status_code == 202, initialized.text
    return session_id
