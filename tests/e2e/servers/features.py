"""A server for end-to-end tests: one tool per Context feature, with state the tests can query."""

import asyncio
import os
import time

from pydantic import BaseModel

from bastion import App, Context, ToolError

app = App("features", "2.0.0")
state = {"cancelled": 0, "counter": 0}


class Forecast(BaseModel):
    city: str
    celsius: float
    sunny: bool


@app.tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool
def forecast(city: str) -> Forecast:
    """Structured output validated by the client against the output schema."""
    return Forecast(city=city, celsius=21.5, sunny=True)


@app.tool
def blocking(seconds: float = 0.2) -> str:
    """A synchronous tool that blocks; it runs on a worker thread."""
    time.sleep(seconds)
    return "done"


@app.tool
async def slow(seconds: float, ctx: Context) -> str:
    """Sleeps; cancelling the call cancels the sleep."""
    try:
        await ctx.progress(0, seconds)
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        state["cancelled"] += 1
        raise
    return "finished"


@app.tool
def cancelled_count() -> int:
    """How many calls of `slow` were cancelled."""
    return state["cancelled"]


@app.tool
async def chatty(ctx: Context) -> str:
    """Logs and reports progress."""
    for step in range(3):
        await ctx.log("info", f"step {step}", logger="chatty")
        await ctx.progress(step + 1, 3, f"step {step + 1}")
    await ctx.debug("debug detail")
    return "talked"


@app.tool
async def summarize(text: str, ctx: Context) -> str:
    """Asks the client's model to summarize."""
    result = await ctx.sample(f"Summarize: {text}", max_tokens=50, system_prompt="Be brief.")
    return f"{result['model']}: {result['content']['text']}"


class Signup(BaseModel):
    name: str
    age: int


@app.tool
async def signup(ctx: Context) -> str:
    """Asks the user for a name and age, then for a confirmation."""
    first = await ctx.elicit("Your details?", Signup)
    if first.action != "accept":
        return f"first {first.action}"
    second = await ctx.elicit("Confirm?", {"type": "object", "properties": {"ok": {"type": "boolean"}}})
    return f"{first.data.name} ({first.data.age}) confirmed={second.data.get('ok') if second.data else None}"


@app.tool
async def visit(ctx: Context) -> str:
    """Sends the user to a URL."""
    answer = await ctx.elicit_url("Please authorize", "https://example.com/authorize")
    return answer.action


@app.tool
async def my_roots(ctx: Context) -> list[str]:
    """The client's roots."""
    return [root["uri"] for root in await ctx.list_roots()]


@app.tool(requires_secrets=["FEATURES_API_KEY"])
def secret_length(ctx: Context) -> int:
    """Uses a declared secret without revealing it."""
    return len(ctx.secret("FEATURES_API_KEY"))


@app.tool
def undeclared_secret(ctx: Context) -> str:
    """Tries to read a secret it did not declare."""
    return ctx.secret("FEATURES_API_KEY")


@app.tool
def who_am_i(ctx: Context) -> str:
    """The principal (None without authentication) and the protocol version."""
    return f"{ctx.principal} {ctx.protocol_version}"


@app.tool
def add_tool(name: str) -> str:
    """Registers a new tool at runtime; clients hear tools/list_changed."""

    def dynamic() -> str:
        return f"I am {name}"

    dynamic.__doc__ = f"A tool named {name}."
    app.tool(name=name)(dynamic)
    return "added"


@app.tool
async def upstream_profile(ctx: Context) -> str:
    """Calls the identity provider's userinfo with the user's upstream token."""
    import httpx

    token = await ctx.upstream_token("corp", ["notes:read"])  # renewed first if it has expired
    remembered["corp"] = token  # test-only: lets a later call check whether the provider still honours it
    async with httpx.AsyncClient() as http:
        answer = await http.get(os.environ["FEATURES_UPSTREAM_USERINFO"], headers={"Authorization": f"Bearer {token}"})
    return f"{answer.status_code} {answer.json().get('name')}"


@app.tool(requires_upstream="github")
async def github_login(ctx: Context) -> str:
    """Calls GitHub's API as the user."""
    import httpx

    token = await ctx.upstream_token("github")
    async with httpx.AsyncClient() as http:
        answer = await http.get(
            f"{os.environ['FEATURES_GITHUB_API']}/user", headers={"Authorization": f"Bearer {token}"}
        )
    return str(answer.json()["login"])


remembered: dict[str, str] = {}


@app.tool
async def upstream_remembered_active() -> str:
    """Test-only: asks the provider (introspection) whether the last upstream token seen is still active."""
    import httpx

    issuer = os.environ["FEATURES_UPSTREAM_USERINFO"].removesuffix("/me")
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{issuer}/token/introspection",
            data={
                "token": remembered["corp"],
                "client_id": os.environ["FEATURES_UPSTREAM_CLIENT_ID"],
                "client_secret": os.environ["CORP_CLIENT_SECRET"],
            },
        )
    return str(answer.json().get("active"))


@app.tool
def upstream_admin(ctx: Context) -> str:
    """Asks for an upstream scope the sign-in does not grant."""
    return ctx.principal.upstream_token("corp", ["admin:write"])


@app.tool(requires_upstream="corp", upstream_scopes=["admin:write"])
def upstream_declared(ctx: Context) -> str:
    """Declares an upstream scope the sign-in does not grant: refused before it runs."""
    raise AssertionError("never runs")


@app.resource("features://counter", mime_type="text/plain")
def counter() -> str:
    """A counter clients can watch."""
    return str(state["counter"])


@app.tool
async def bump() -> int:
    """Increments the counter and notifies its subscribers."""
    state["counter"] += 1
    await app.notify_resource_updated("features://counter")
    return state["counter"]


@app.tool
def refuse() -> str:
    """Fails with a message for the user."""
    raise ToolError("not today")


if __name__ == "__main__":
    app.run()
