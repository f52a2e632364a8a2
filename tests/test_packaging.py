"""The package as users install it: a wheel built by the standard tools holds every module, the page templates
and the `bastion` command, and asks only for the runtime dependencies (the test toolchain is an extra)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "bastion"

pytestmark = pytest.mark.e2e  # builds a wheel (a few seconds)


def test_the_wheel_holds_the_code_the_templates_and_the_command(tmp_path):
    tree = tmp_path / "tree"  # a copy, built from inside: the build writes nothing into the checkout
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(tmp_path),
        ".",
    ]
    built = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=tree)
    assert built.returncode == 0, built.stderr
    [wheel] = tmp_path.glob("mcp_bastion-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {f"bastion/{path.relative_to(SRC)}" for path in SRC.rglob("*.py")}
    assert modules <= names, sorted(modules - names)
    templates = {f"bastion/{path.relative_to(SRC)}" for path in (SRC / "oauth" / "templates").glob("*.html")}
    assert templates and templates <= names, sorted(templates - names)
    assert "bastion/oauth/templates/connect.html" in names
    dist_info = next(name.split("/")[0] for name in names if name.endswith(".dist-info/METADATA"))
    archive = zipfile.ZipFile(wheel)
    assert "bastion = bastion.cli:main" in archive.read(f"{dist_info}/entry_points.txt").decode()
    metadata = Parser().parsestr(archive.read(f"{dist_info}/METADATA").decode())
    required = metadata.get_all("Requires-Dist") or []
    runtime = [r for r in required if "extra ==" not in r]
    assert not any(name in " ".join(runtime) for name in ("pytest", "playwright", "mypy", "ruff", "fastmcp"))
    extras = set(metadata.get_all("Provides-Extra") or [])
    assert {"redis", "postgres", "metrics", "otel", "test"} <= extras
