"""The demo: a small notes server. Start it with `scripts/demo` (or `bastion serve examples/notes.py`).

It shows the everyday shape of a Bastion server: typed tools whose schemas come from their signatures,
structured output from a pydantic model, a resource template, a prompt, and a tool that asks the user.
"""

import itertools
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from bastion import App, Context, ToolError

app = App("notes", instructions="Keep short notes: add, list, search and read them.")


class Note(BaseModel):
    id: int
    text: str
    tags: list[str] = Field(default_factory=list)
    created: datetime


notes: dict[int, Note] = {}
ids = itertools.count(1)


@app.tool
async def add_note(text: str, ctx: Context, tags: list[str] | None = None) -> Note:
    """Store a note and return it.

    Args:
        text: What to remember.
        tags: Optional labels to find it by later.
    """
    if not text.strip():
        raise ToolError("a note needs some text")
    note = Note(id=next(ids), text=text.strip(), tags=tags or [], created=datetime.now(UTC))
    notes[note.id] = note
    await ctx.info(f"stored note {note.id}")
    await app.notify_list_changed("resources")
    return note


@app.tool(annotations={"readOnlyHint": True})
def search_notes(query: str = "", tag: str | None = None) -> list[Note]:
    """Find notes whose text contains `query` (case-insensitive), optionally with a tag.

    Args:
        query: Text to look for; empty matches every note.
        tag: Only notes with this tag.
    """
    found = [n for n in notes.values() if query.lower() in n.text.lower()]
    return [n for n in found if tag is None or tag in n.tags]


class Confirmation(BaseModel):
    confirm: bool = Field(description="Delete every note?")


@app.tool(annotations={"destructiveHint": True})
async def clear_notes(ctx: Context) -> str:
    """Delete every note, after asking the user to confirm."""
    answer = await ctx.elicit(f"Delete all {len(notes)} notes?", Confirmation)
    if answer.action != "accept" or not answer.data.confirm:
        return "Nothing deleted."
    count = len(notes)
    notes.clear()
    return f"Deleted {count} notes."


@app.resource("notes://{id}", mime_type="application/json")
def read_note(id: str) -> Note:
    """One note, by id."""
    note = notes.get(int(id)) if id.isdigit() else None
    if note is None:
        raise ToolError(f"no note {id}")
    return note


@app.prompt
def summarize_notes(style: str = "bullet points") -> str:
    """Ask the model to summarize every note.

    Args:
        style: How the summary should read.
    """
    listing = "\n".join(f"- {n.text}" for n in notes.values()) or "(no notes yet)"
    return f"Summarize these notes as {style}:\n{listing}"


if __name__ == "__main__":
    app.run()
