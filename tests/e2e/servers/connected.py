"""A server for the connected-accounts end-to-end tests: tools acting at Slack, GitHub and a company's OAuth
provider with the user's connected accounts. Where each lives comes from the environment (local stand-ins)."""

import os

import httpx

from bastion import App, Context

app = App("connected", "1.0.0")


async def slack_user(ctx: Context, scopes: list[str]) -> str:
    token = await ctx.upstream_token("slack", scopes)
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{os.environ['SLACK_BASE']}/api/auth.test", headers={"Authorization": f"Bearer {token}"}
        )
    body = answer.json()
    return str(body["user_id"]) if body.get("ok") else f"refused: {body.get('error')}"


@app.tool(requires_upstream="slack", upstream_scopes=["chat:write"])
async def post_message(text: str, ctx: Context) -> str:
    """Posts to Slack as the user."""
    return f"posted {text!r} as {await slack_user(ctx, ['chat:write'])}"


@app.tool(requires_upstream="slack")
async def slack_whoami(ctx: Context) -> str:
    """Who the user is at Slack (no scope beyond what they granted)."""
    return await slack_user(ctx, [])


@app.tool(requires_upstream="slack", upstream_scopes=["chat:write", "files:write"])
async def upload_file(ctx: Context) -> str:
    """Needs more of Slack than posting."""
    return f"uploaded as {await slack_user(ctx, ['chat:write', 'files:write'])}"


@app.tool(requires_upstream="github", upstream_scopes=["repo"])
async def github_login(ctx: Context) -> str:
    """The user's GitHub login, through GitHub's user API."""
    token = await ctx.upstream_token("github", ["repo"])
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{os.environ['GITHUB_BASE']}/api/user", headers={"Authorization": f"Bearer {token}"})
    return str(answer.json().get("login"))


@app.tool(requires_upstream="docs", upstream_scopes=["openid", "profile"])
async def docs_profile(ctx: Context) -> str:
    """The user's name at the company's provider (its userinfo endpoint)."""
    token = await ctx.upstream_token("docs", ["openid", "profile"])
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{os.environ['DOCS_ISSUER']}/me", headers={"Authorization": f"Bearer {token}"})
    return f"{answer.status_code} {answer.json().get('name')}"
