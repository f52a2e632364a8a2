"""Every code block in README.md and docs/ does what it shows: Python runs (with `app = App(...)` and Bastion's
names at hand, as the surrounding text assumes), TOML loads as Bastion's settings, and each `bastion ...` command
is one the command line accepts. A block that stopped being true fails here before a reader finds out."""

from __future__ import annotations

import re
import shlex
import sys
from pathlib import Path

import pytest

from bastion import Settings
from bastion.cli import parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.DOTALL | re.MULTILINE)


def blocks(language: str) -> list[tuple[str, str]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        for match in BLOCK.finditer(text):
            if match.group(1) == language:
                line = text[: match.start()].count("\n") + 1
                found.append((f"{page.relative_to(ROOT)}:{line}", match.group(2)))
    return found


@pytest.mark.parametrize(("where", "source"), blocks("python"), ids=[w for w, _ in blocks("python")])
def test_python_blocks_run(where, source, monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    monkeypatch.chdir(tmp_path)  # anything a block writes (a database) goes here
    if "async def test_" in source:
        pytest.skip("an example test: run with pytest, beside its page's server file, by tests/test_docs_testing.py")
    import bastion

    namespace = {name: getattr(bastion, name) for name in bastion.__all__}
    namespace.update(__name__="docs_block", app=bastion.App("docs"))
    exec(compile(source, where, "exec"), namespace)


@pytest.mark.parametrize(("where", "source"), blocks("toml"), ids=[w for w, _ in blocks("toml")])
def test_toml_blocks_are_settings(where, source, tmp_path):
    path = tmp_path / "bastion.toml"
    path.write_text(source)
    Settings.load(path, env={})  # every key known, every value of its type


def bastion_commands() -> list[tuple[str, str]]:
    found = []
    for where, source in blocks("sh"):
        for line in source.replace("\\\n", " ").splitlines():  # continued lines joined
            if line.strip().startswith(("bastion ", ".venv/bin/bastion ")):
                found.append((where, line.strip()))
    return found


@pytest.mark.parametrize(("where", "line"), bastion_commands(), ids=[w for w, _ in bastion_commands()])
def test_bastion_commands_are_accepted(where, line, capsys):
    words = shlex.split(line, comments=True)
    try:
        parser().parse_args(words[1:])
    except SystemExit as exc:
        pytest.fail(f"{where}: `{line}` is refused: {capsys.readouterr().err.strip()} ({exc.code})")


def test_there_are_blocks_to_check():
    assert len(blocks("python")) >= 8 and len(blocks("toml")) >= 15 and len(bastion_commands()) >= 10
    assert sys.version_info >= (3, 11)


def shell_lines() -> list[tuple[str, str]]:
    return [
        (where, line.strip())
        for where, source in blocks("sh")
        for line in source.replace("\\\n", " ").splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_scripts_and_benchmarks_the_docs_run_exist_and_take_their_options():
    import subprocess

    for where, line in shell_lines():
        words = shlex.split(line, comments=True)
        if words and words[0].startswith("scripts/"):
            script = ROOT / words[0]
            assert script.is_file() and script.stat().st_mode & 0o111, f"{where}: {words[0]} is not a script"
        if words[:1] == [".venv/bin/python"] and words[1].startswith("bench/"):
            shown = subprocess.run(
                [sys.executable, str(ROOT / words[1]), "--help"], capture_output=True, text=True, timeout=60, cwd=ROOT
            )
            assert shown.returncode == 0, f"{where}: {words[1]} --help: {shown.stderr}"
            for option in re.findall(r"--[a-z][a-z-]+", line.split("#", 1)[-1]):  # the options its comment names
                assert option in shown.stdout, f"{where}: {words[1]} has no {option}"


def test_the_systemd_unit_starts_a_command_bastion_accepts():
    [(where, unit)] = blocks("ini")
    [exec_start] = [line for line in unit.splitlines() if line.startswith("ExecStart=")]
    words = shlex.split(exec_start.removeprefix("ExecStart="))
    assert words[0].endswith("/bin/bastion"), where
    parser().parse_args(words[1:])


def test_the_sql_shown_is_the_schema_the_code_creates():
    import sqlite3

    from bastion.store.bus.sqlite import SCHEMA

    def described(script: str) -> list[tuple]:
        db = sqlite3.connect(":memory:")
        db.executescript(script)
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        shape = [(table, *column) for table in tables for column in db.execute(f"PRAGMA table_info({table})")]
        indexes = db.execute("SELECT name, tbl_name FROM sqlite_master WHERE type = 'index'").fetchall()
        db.close()
        return sorted(shape) + sorted(indexes)

    [(where, shown)] = blocks("sql")
    assert described(shown) == described(SCHEMA), f"{where} is not the schema the SQLite bus creates"
