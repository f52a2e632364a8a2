"""The example tests in the docs (docs/testing.md, docs/getting-started.md), run as a user would run them: pytest
on the blocks, beside the server files the same page shows (a block starting `# server.py` is that file)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)
FILE = re.compile(r"^# (\w+\.py)\b")


def pages_with_tests() -> list[Path]:
    return [page for page in sorted((ROOT / "docs").glob("*.md")) if "async def test_" in page.read_text()]


@pytest.mark.parametrize("page", pages_with_tests(), ids=lambda page: page.name)
def test_the_documented_example_tests_pass(page, tmp_path):
    tests = 0
    for number, block in enumerate(BLOCK.findall(page.read_text())):
        named = FILE.match(block)
        if "async def test_" in block:
            (tmp_path / f"test_{page.stem.replace('-', '_')}_{number}.py").write_text(block)
            tests += block.count("async def test_")
        elif named:
            (tmp_path / named.group(1)).write_text(block)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT / "examples")])}
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-o", "asyncio_mode=auto", str(tmp_path)]
    run = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{tests} passed" in run.stdout, run.stdout


def test_pages_with_example_tests_are_found():
    assert {page.name for page in pages_with_tests()} >= {"testing.md", "getting-started.md"}
