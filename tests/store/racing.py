"""Processes racing for the same records: each connects, says "ready", waits for "go" (so that all start at
once), and prints what it won as JSON. Used with tests/store/postgres_taker.py and redis_taker.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.processes import stop

ROOT = Path(__file__).resolve().parents[2]
HANG = 60  # seconds a racer may take before it counts as hung (a failure, not a timing bound)


def race(module: str, arguments: list[str], processes: int) -> list:
    """Everything the `processes` racers of `python -m <module> <arguments>` won, all started at once."""
    command = [sys.executable, "-m", module, *arguments]
    racers = [
        subprocess.Popen(
            command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, start_new_session=True
        )
        for _ in range(processes)
    ]
    try:
        for racer in racers:  # all connected before any starts
            assert racer.stdout is not None and racer.stdout.readline().strip() == "ready"
        for racer in racers:
            assert racer.stdin is not None
            racer.stdin.write("go\n")
            racer.stdin.flush()
        won = []
        for racer in racers:
            out, _ = racer.communicate(timeout=HANG)
            assert racer.returncode == 0
            won.extend(json.loads(out))
    finally:
        for racer in racers:
            stop(racer)
    return won
