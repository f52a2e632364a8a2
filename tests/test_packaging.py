"""The package as users install it: a wheel built by the standard tools holds every module, the page templates
and the `bastion` command, and asks only for the runtime dependencies (the test toolchain is an extra)."""

from __future__ import annotations

import os
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


def test_the_installed_wheel_serves_from_where_it_was_installed(tmp_path):
    """`pip install` of the wheel (into a folder of its own, the dependencies being this environment's): Bastion is
    imported from there, renders its pages from the templates the wheel carries, and its command works."""
    tree = tmp_path / "tree"
    tree.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "src", tree / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    pip = [sys.executable, "-m", "pip"]
    wheel = subprocess.run(
        [*pip, "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), "."],
        cwd=tree,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert wheel.returncode == 0, wheel.stderr
    [built] = tmp_path.glob("mcp_bastion-*.whl")
    site = tmp_path / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(site), str(built)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert installed.returncode == 0, installed.stderr
    env = {**os.environ, "PYTHONPATH": str(site)}
    check = (
        "import bastion, bastion.oauth.pages as pages; print(bastion.__file__); "
        "print(b'Connect your' in pages.render('connect.html', provider='Slack', scopes=[]).body)"
    )
    shown = subprocess.run(
        [sys.executable, "-c", check], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    where, rendered = shown.stdout.split()
    assert where.startswith(str(site)) and rendered == "True"
    inspected = subprocess.run(
        [sys.executable, "-m", "bastion.cli", "inspect", str(ROOT / "examples" / "notes.py"), "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert inspected.returncode == 0 and '"server": "notes"' in inspected.stdout, inspected.stderr
