"""The Bastion side of the tools/call benchmark: `add(a, b)`, as a coroutine (like the raw endpoint) and as a
plain function (which Bastion runs on a worker thread so that blocking code never stalls the server)."""

from bastion import App

app = App("bench")


@app.tool
async def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@app.tool
def add_sync(a: int, b: int) -> int:
    """Add two integers, in a plain (thread-pooled) function."""
    return a + b
