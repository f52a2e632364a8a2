"""Stopping what a test started in a process group of its own (start_new_session=True)."""

from __future__ import annotations

import os
import signal
import subprocess
from typing import Any


def stop(process: subprocess.Popen[Any], seconds: float = 10) -> None:
    """SIGTERM to the whole group, SIGKILL when it has not exited after `seconds`; waits for the exit."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
