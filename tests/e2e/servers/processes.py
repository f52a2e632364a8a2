"""A server for the multi-process tests: each tool answers with the process that ran it."""

import os

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
