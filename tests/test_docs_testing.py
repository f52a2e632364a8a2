"""docs/testing.md's example test of the demo server, run as a user would run it: pytest on the code block."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_documented_example_test_passes(tmp_path):
    text = (ROOT / "docs" / "testing.md").read_text()
    section = text.split("## Test your own server", 1)[1].split("\n## ", 1)[0]
    [block] = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    (tmp_path / "test_notes_example.py").write_text(block)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "examples")}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", str(tmp_path)]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed" in run.stdout
