"""Benchmark: Bastion's tools/call against a raw Starlette endpoint, in one run, over loopback.

    .venv/bin/python bench/tools_call.py [--seconds 8] [--rounds 3] [--connections 32]

Each target is started as its own process and loaded in turn with wrk (installed with apt-get if missing),
round after round, so machine noise falls on all of them alike. Prints requests/s, p50/p99 latency and the
serving process's peak RSS (VmHWM), the ratios to the raw endpoint, and whether the targets hold:
throughput >= 0.6 of raw, p99 <= 2x raw, peak RSS <= 60 MB.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
PYTHON = sys.executable
META = {
    "io.modelcontextprotocol/protocolVersion": "2026-07-28",
    "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
    "io.modelcontextprotocol/clientCapabilities": {},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def call_body(tool: str, modern: bool = True) -> str:
    params: dict = {"name": tool, "arguments": {"a": 20, "b": 22}}
    if modern:
        params["_meta"] = META
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})


def post(
    url: str, body: str, headers: dict[str, str], tls: ssl.SSLContext | None = None
) -> tuple[dict, dict[str, str]]:
    request = urllib.request.Request(url, body.encode(), {"content-type": "application/json", **headers})
    with urllib.request.urlopen(request, timeout=5, context=tls) as response:
        return json.loads(response.read() or b"null"), dict(response.headers)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a process, from /proc (the fields after the command's closing parenthesis)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_queue_seconds(pid: int) -> float:
    """Time the process's threads have spent runnable but waiting for a CPU (/proc schedstat): on a shared
    machine, what tells a server that is slow from one that is starved."""
    return sum(int(task.read_text().split()[1]) for task in Path(f"/proc/{pid}/task").glob("*/schedstat")) / 1e9


@dataclass
class Target:
    name: str
    command: list[str]
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    legacy: bool = False
    tool: str = "add"
    informational: bool = False  # reported, but not held to the targets
    env: dict[str, str] = field(default_factory=dict)
    bearer: Callable[[str], str] | None = None  # obtains an access token from the server at this base URL
    process: subprocess.Popen | None = None
    port: int = 0
    tls: ssl.SSLContext | None = None  # what a check over https trusts (wrk does not verify certificates)
    log: Path | None = None  # where the server's stderr (its log) goes; nowhere by default
    fixed_port: int = 0  # a port chosen beforehand (another target must know it); a free one otherwise

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.base}/mcp"

    def start(self) -> None:
        self.launch()
        self.prepare()

    def launch(self) -> None:
        """Start the process and wait until its port accepts connections."""
        self.port = self.fixed_port or free_port()
        command = [part.replace("{port}", str(self.port)) for part in self.command]
        stderr = self.log.open("ab") if self.log else subprocess.DEVNULL
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
            env={**os.environ, **self.env},
        )
        if not isinstance(stderr, int):
            stderr.close()  # the child has its own copy
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start")

    def prepare(self) -> None:
        """Headers and body of the call (a token and a session first, where the target needs them); one check."""
        self.headers = {"accept": "application/json, text/event-stream"}
        if self.bearer is not None:
            self.headers["authorization"] = f"Bearer {self.bearer(self.base)}"
        if self.legacy:
            init = json.dumps(
                {
                    "jsonrpc": "2.0",
                    "id": 0,
                    "method": "initialize",
                    "params": {
                        "protocolVersion": "2025-11-25",
                        "capabilities": {},
                        "clientInfo": {"name": "bench", "version": "1"},
                    },
                }
            )
            _, response_headers = post(self.url, init, self.headers, self.tls)
            session = {k.lower(): v for k, v in response_headers.items()}["mcp-session-id"]
            self.headers.update({"mcp-session-id": session, "mcp-protocol-version": "2025-11-25"})
            self.body = call_body(self.tool, modern=False)
        else:
            self.headers.update(
                {"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call", "mcp-name": self.tool}
            )
            self.body = call_body(self.tool)
        answer, _ = post(self.url, self.body, self.headers, self.tls)
        assert answer["result"]["structuredContent"] == {"result": 42}, answer

    def cpu_seconds(self) -> float:
        """User plus system CPU time the serving process has used so far (all its threads)."""
        assert self.process is not None
        return process_cpu_seconds(self.process.pid)

    def waited_seconds(self) -> float:
        assert self.process is not None
        return run_queue_seconds(self.process.pid)

    def peak_rss_mb(self) -> float:
        assert self.process is not None
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024  # type: ignore[union-attr]

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(10)


def ensure_wrk() -> str:
    path = shutil.which("wrk")
    if path:
        return path
    print("installing wrk (apt-get install wrk) ...", file=sys.stderr)
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "wrk"],
        check=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
    )
    return shutil.which("wrk") or sys.exit("wrk is not available")


def to_ms(value: str) -> float:
    match = re.match(r"([\d.]+)(us|ms|s|m)$", value)
    if match is None:
        raise ValueError(f"unexpected wrk latency {value!r}")
    return float(match.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[match.group(2)]


def call_script(target: Target) -> str:
    """wrk's Lua for the target's call: the same POST on every request."""
    headers = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in target.headers.items())
    return (
        f'wrk.method = "POST"\nwrk.body = {json.dumps(target.body)}\n'
        f'wrk.headers["content-type"] = "application/json"\n{headers}'
    )


def load(
    wrk: str, target: Target, seconds: int, connections: int, workdir: Path, script: str | None = None, url: str = ""
) -> dict[str, float]:
    """One wrk run against the target (its call, or `script` against `url`): requests/s, p50 and p99 in ms."""
    path = workdir / f"{target.name}.lua"
    path.write_text(script if script is not None else call_script(target))
    out = subprocess.run(
        [wrk, "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(path), url or target.url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"{target.name}: errors under load:\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50": to_ms(re.search(r"^\s+50%\s+(\S+)", out, re.MULTILINE).group(1)),  # type: ignore[union-attr]
        "p99": to_ms(re.search(r"^\s+99%\s+(\S+)", out, re.MULTILINE).group(1)),  # type: ignore[union-attr]
    }


def options(description: str) -> argparse.ArgumentParser:
    """The options every wrk benchmark takes (a script may add its own)."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=32)
    return parser


def arguments(description: str) -> argparse.Namespace:
    return options(description).parse_args()


@contextlib.contextmanager
def started(targets: list[Target]) -> Iterator[None]:
    """Every target started (and checked) for the block, stopped after it."""
    try:
        for target in targets:
            target.start()
        yield
    finally:
        for target in targets:
            target.stop()


Load = Callable[[Target, int], dict[str, float]]  # one run against a target for some seconds: its figures
WARM_UP = 2


def in_turn(targets: list[Target], rounds: int, seconds: int, run: Load) -> dict[str, dict[str, float]]:
    """`run` on each target in turn, round after round (a short warm-up first); medians by name.

    Each round starts with a different target, so no target always runs after the same neighbour.
    """
    results: dict[str, list[dict[str, float]]] = {t.name: [] for t in targets}
    for target in targets:
        run(target, WARM_UP)
    for round_ in range(rounds):
        shift = round_ % len(targets)
        for target in targets[shift:] + targets[:shift]:
            results[target.name].append(run(target, seconds))
    return {name: {k: statistics.median(r[k] for r in runs) for k in runs[0]} for name, runs in results.items()}


def measure(targets: list[Target], args: argparse.Namespace) -> tuple[dict[str, dict[str, float]], dict[str, float]]:
    """Start every target, load them in turn round after round; medians and peak RSS by name."""
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp, started(targets):
        summary = in_turn(
            targets,
            args.rounds,
            args.seconds,
            lambda target, seconds: load(wrk, target, seconds, args.connections, Path(tmp)),
        )
        rss = {t.name: t.peak_rss_mb() for t in targets}
    return summary, rss


BASTION = [PYTHON, "-m", "bastion.cli", "serve", "bench/add_server.py", "--port", "{port}"]
QUIET = {"BASTION_ACCESS_LOG": "false"}


def main() -> int:
    args = arguments(__doc__.split("\n\n")[0])
    targets = [
        Target("raw-starlette", [PYTHON, "bench/raw_starlette.py", "{port}"]),
        # The access log off, as the raw endpoint writes none: what it costs is bench/operations.py's to say.
        Target("bastion-2026-07-28", BASTION, env=QUIET),
        Target("bastion-2025-11-25-session", BASTION, legacy=True, env=QUIET),
        Target("bastion-2026-07-28-sync-tool", BASTION, tool="add_sync", informational=True, env=QUIET),
    ]
    summary, rss = measure(targets, args)
    raw = summary["raw-starlette"]
    print(
        f"tools/call add(a, b); wrk 1 thread, {args.connections} connections, {args.rounds} rounds x "
        f"{args.seconds}s, medians"
    )
    print(
        f"{'target':30} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS MB':>12} {'req/s ratio':>12} "
        f"{'p99 ratio':>10}"
    )
    ok = True
    for name, s in summary.items():
        rps_ratio, p99_ratio = s["rps"] / raw["rps"], s["p99"] / raw["p99"]
        print(
            f"{name:30} {s['rps']:9.0f} {s['p50']:8.2f} {s['p99']:8.2f} {rss[name]:12.1f} {rps_ratio:12.2f} "
            f"{p99_ratio:10.2f}"
        )
        target = next(t for t in targets if t.name == name)
        if name.startswith("bastion") and not target.informational:
            ok &= rps_ratio >= 0.6 and p99_ratio <= 2.0 and rss[name] <= 60
    print("(the sync-tool row is for information: plain functions run on a worker thread)")
    print("targets (req/s >= 0.6 x raw, p99 <= 2 x raw, peak RSS <= 60 MB):", "MET" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
