"""A notes server whose tools need different scopes: reading needs what every caller has, writing more."""

import json

from bastion import App, Context

app = App("scoped-notes")
NOTES: list[str] = []


@app.tool
def who_am_i(ctx: Context) -> str:
    """The caller as Bastion sees it."""
    p = ctx.principal
    assert p is not None
    return json.dumps({"subject": p.subject, "client": p.client_id, "scopes": sorted(p.scopes)})


@app.tool
def list_notes() -> list[str]:
    """Every note."""
    return NOTES


@app.tool(scopes=["notes:write"])
def add_note(text: str) -> str:
    """Add a note (needs notes:write)."""
    NOTES.append(text)
    return f"added {text!r}"
