"""Real processes for end-to-end tests: a Bastion server started the way a user starts it."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.processes import stop
from tests.waiting import free_port, healthy, wait_until

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
NODE_DIR = ROOT / "tests" / "e2e" / "node"

__all__ = ["free_port"]  # the e2e tests take it from here


@contextmanager
def bastion_server(
    target: Path | str,
    *args: str,
    env: dict[str, str] | None = None,
    port: int | None = None,
    log: Path | None = None,
) -> Iterator[str]:
    """Run `bastion serve target` on a free port (or `port`); yields the MCP URL, stops the server afterwards.
    With `log`, its output goes to that file (for a test to read, and so that a long run never fills a pipe)."""
    port = port or free_port()
    command = [sys.executable, "-m", "bastion.cli", "serve", str(target), "--port", str(port), *args]
    with open(log, "wb") if log else contextlib.nullcontext(subprocess.PIPE) as output:
        process = subprocess.Popen(
            command,
            env={**os.environ, **(env or {})},
            stdout=output,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            output = log.read_text() if log else process.stdout.read().decode() if process.stdout else ""
            raise RuntimeError(f"server exited with {process.returncode}:\n{output}")
        return healthy(base)

    try:
        wait_until(up, f"bastion serve {target} answering on {base}/healthz")
        yield f"{base}/mcp"
    finally:
        stop(process)
        if process.stdout:
            process.stdout.close()


@pytest.fixture(scope="session")
def everything_url() -> Iterator[str]:
    with bastion_server(EXAMPLES / "everything.py") as url:
        yield url
