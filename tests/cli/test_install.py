"""`bastion install`: each client's own configuration file, merged and never clobbered."""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path

import pytest

from tests.cli.command import run

ROOT = Path(__file__).resolve().parents[2]
NOTES = ROOT / "examples" / "notes.py"


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A home and a project of the test's own: nothing of the machine's is read or written."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "home" / ".config"))
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    return tmp_path


def test_each_client_gets_its_documented_shape(home, capsys):
    stdio = {"command": sys.executable, "args": ["-m", "bastion.cli", "serve", str(NOTES), "--stdio"]}
    assert run(capsys, "install", "claude-desktop", str(NOTES))[0] == 0
    desktop = json.loads((home / "home/.config/Claude/claude_desktop_config.json").read_text())
    assert desktop == {"mcpServers": {"notes": stdio}}
    assert run(capsys, "install", "claude-code", str(NOTES))[0] == 0
    assert json.loads(Path(".mcp.json").read_text()) == {"mcpServers": {"notes": {"type": "stdio", **stdio}}}
    assert run(capsys, "install", "cursor", "https://mcp.example.com/mcp")[0] == 0
    assert json.loads(Path(".cursor/mcp.json").read_text()) == {
        "mcpServers": {"mcp.example.com": {"url": "https://mcp.example.com/mcp"}}
    }
    code, out, _ = run(capsys, "install", "vscode", "https://mcp.example.com/mcp", "--name", "notes")
    assert code == 0 and out.strip() == "vscode: servers.notes in .vscode/mcp.json"
    assert json.loads(Path(".vscode/mcp.json").read_text()) == {
        "servers": {"notes": {"type": "http", "url": "https://mcp.example.com/mcp"}}
    }
    assert run(capsys, "install", "claude-code", str(NOTES), "--user", "--env", "NOTES_KEY=x")[0] == 0
    user = json.loads((home / "home/.claude.json").read_text())
    assert user["mcpServers"]["notes"]["env"] == {"NOTES_KEY": "x"}
    assert stat.S_IMODE((home / "home/.claude.json").stat().st_mode) == 0o600  # a new file: the user's alone


def test_other_entries_and_settings_stay_and_a_different_entry_needs_force(home, capsys):
    config = Path(".cursor/mcp.json")
    config.parent.mkdir()
    config.write_text(json.dumps({"mcpServers": {"other": {"url": "https://other.example/mcp"}}, "theme": "dark"}))
    config.chmod(0o644)
    assert run(capsys, "install", "cursor", str(NOTES))[0] == 0
    merged = json.loads(config.read_text())
    assert merged["theme"] == "dark" and merged["mcpServers"]["other"] == {"url": "https://other.example/mcp"}
    assert stat.S_IMODE(config.stat().st_mode) == 0o644  # kept
    assert run(capsys, "install", "cursor", str(NOTES))[0] == 0  # the same again: nothing to refuse
    before = config.read_text()
    code, _, err = run(capsys, "install", "cursor", "https://mcp.example.com/mcp", "--name", "notes")
    assert code == 2 and "--force" in err and config.read_text() == before
    assert run(capsys, "install", "cursor", "https://mcp.example.com/mcp", "--name", "notes", "--force")[0] == 0
    assert json.loads(config.read_text())["mcpServers"]["notes"] == {"url": "https://mcp.example.com/mcp"}


def test_a_file_it_cannot_read_is_left_alone(home, capsys):
    broken = Path(".vscode/mcp.json")
    broken.parent.mkdir()
    broken.write_text('{\n  // my servers\n  "servers": {}\n}\n')  # comments: not JSON
    code, _, err = run(capsys, "install", "vscode", str(NOTES))
    assert code == 2 and "is not valid JSON" in err and "not changed" in err
    assert broken.read_text().startswith("{\n  // my servers")
    code, _, err = run(capsys, "install", "claude-desktop", "https://mcp.example.com/mcp")
    assert code == 2 and "Connectors" in err
    code, _, err = run(capsys, "install", "cursor", "absent.py")
    assert code == 2 and err.startswith("bastion: no such file: absent.py")
    assert not Path(".cursor").exists()
