"""A server for the multi-process tests: each tool answers with the process that ran it."""

import os

from pydantic import BaseModel

from bastion import App, Context

app = App("processes", "1.0.0")


@app.tool
def pid() -> int:
    """The id of the worker process that ran this call."""
    return os.getpid()


@app.tool
def who_am_i(ctx: Context) -> str:
    """The caller's principal, and the process that saw it."""
    return f"{ctx.principal.subject if ctx.principal else None} in {os.getpid()}"


class Name(BaseModel):
    name: str


@app.tool
async def ask_name(ctx: Context) -> str:
    """Ask the client who it is (elicitation), and say which process asked."""
    answer = await ctx.elicit("Who are you?", Name)
    said = answer.data.name if answer.action == "accept" and answer.data else answer.action
    return f"{said} in {os.getpid()}"


@app.resource("test://board", mime_type="text/plain")
def board() -> str:
    return f"the board, read in {os.getpid()}"


@app.tool
async def touch_board() -> int:
    """Tell subscribers of test://board that it changed (from this process), and say which process did."""
    await app.notify_resource_updated("test://board")
    return os.getpid()
