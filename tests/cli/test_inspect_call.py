"""`bastion inspect` and `bastion call` on a server file, served in process: what a developer reads, what a
program parses, and mistakes ending in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bastion.cli.call import parse_arguments
from tests.cli.command import run

ROOT = Path(__file__).resolve().parents[2]
NOTES = str(ROOT / "examples" / "notes.py")
SCOPED = """
from bastion import App
app = App("scoped")

@app.tool(scopes=["notes:write"])
def delete_note(note_id: str) -> str:
    '''Delete one note.'''
    return f"deleted {note_id}"

@app.tool
def boom() -> str:
    '''Always fails.'''
    raise ValueError("no")
"""


def test_inspect_shows_tools_resources_prompts_and_scopes(capsys, tmp_path):
    code, out, _ = run(capsys, "inspect", NOTES)
    assert code == 0
    assert out.splitlines()[0] == "notes (protocol 2026-07-28)"
    assert "  add_note(text: string, tags?: list[string] | null)" in out
    assert "  notes://{id}  One note, by id." in out and "  summarize_notes(style?)" in out
    server = tmp_path / "scoped.py"
    server.write_text(SCOPED)
    code, out, _ = run(capsys, "inspect", "--json", str(server), "--protocol", "2025-11-25")
    found = json.loads(out)
    assert found["protocol"] == "2025-11-25" and found["server"] == "scoped"
    [delete, _] = found["tools"]
    assert delete["scopes"] == ["notes:write"] and delete["inputSchema"]["required"] == ["note_id"]


def test_call_prints_the_answer_and_its_exit_status_says_how_it_went(capsys, tmp_path):
    code, out, _ = run(capsys, "call", NOTES, "search_notes", "query=milk")
    assert code == 0 and out.strip() == "[]"
    server = tmp_path / "scoped.py"
    server.write_text(SCOPED)
    code, out, _ = run(capsys, "call", str(server), "delete_note", "note_id==42")
    assert code == 0 and out.strip() == "deleted 42"
    code, out, _ = run(capsys, "call", "--json", str(server), "boom")
    assert code == 1 and json.loads(out)["isError"] is True
    code, _, err = run(capsys, "call", str(server), "nope")
    assert code == 2 and err.startswith("bastion: tools/call: the server answered -32602")


def test_arguments_are_json_when_they_read_as_json():
    parsed = parse_arguments(["n=42", "flag=true", 'tags=["a"]', "name=ada", "zip==02134", 'raw:="x"', "eq=a=b"])
    assert parsed == {"n": 42, "flag": True, "tags": ["a"], "name": "ada", "zip": "02134", "raw": "x", "eq": "a=b"}
    with pytest.raises(SystemExit):
        parse_arguments(["nothing"])
    with pytest.raises(SystemExit):
        parse_arguments(["bad:={"])


def test_mistakes_end_in_one_line(capsys, tmp_path):
    for argv in (
        ("inspect", NOTES, "--header", "Authorization: Bearer x"),
        ("inspect", NOTES, "--protocol", "2024-01-01"),
        ("inspect", str(tmp_path / "absent.py")),
    ):
        code, _, err = run(capsys, *argv)
        assert code == 2 and err.count("\n") == 1 and err.startswith("bastion: "), (argv, err)
