"""Benchmark: tools/call through HAProxy to 1, 2, 3 ... `bastion serve` instances sharing one store, in one run.

    .venv/bin/python bench/instances.py [--max 3] [--store redis|postgres] [--seconds 8] [--rounds 3]
                                        [--connections 32]

For each instance count a fleet: that many `bastion serve bench/add_server.py` processes with the authorization
server on, one shared store (Redis or PostgreSQL, started as the tests start them, tests/services/), and
HAProxy running examples/haproxy.cfg with a `server` line per instance and a throwaway TLS certificate (as
tests/e2e/test_haproxy.py starts it). Every fleet is up at once; wrk loads them in turn, round after round, over
TLS with one access token obtained through the proxy by the real flow (round robin sends its requests to every
instance). Prints requests/s, p50/p99, the cores used by the instances and by HAProxy, and the ratio to one
instance. On a machine with fewer cores than instances (plus HAProxy, the store and wrk) more instances cannot
add throughput: the point is then what the extra hop and the sharing cost.
"""

from __future__ import annotations

import contextlib
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sign_in import access_token, authorization_server
from tools_call import BASTION, ROOT, Target, ensure_wrk, in_turn, load, options, process_cpu_seconds, started

sys.path.insert(0, str(ROOT))
from tests.e2e.haproxy import example_env, example_for, proxy
from tests.services.postgres import running_cluster
from tests.services.redis import running_server
from tests.waiting import free_port


@dataclass
class Fleet(Target):
    """`size` Bastion instances behind one HAProxy; its port is the proxy's."""

    size: int = 1
    folder: Path = Path()
    store: Callable[[], dict[str, str]] = dict  # settings for a store of this fleet's own
    instances: list[Target] = field(default_factory=list)
    proxy_pid: int = 0
    _stack: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def base(self) -> str:
        return f"https://localhost:{self.port}"

    def launch(self) -> None:
        self.port = free_port()
        env = {
            **self.env,
            **self.store(),
            "BASTION_PUBLIC_URL": self.base,
            "BASTION_TRUSTED_PROXIES": "127.0.0.1",
        }
        self.instances = [Target(f"{self.name}-{i}", BASTION, env=env) for i in range(1, self.size + 1)]
        for instance in self.instances:
            self._stack.callback(instance.stop)
            instance.launch()
        self.folder.mkdir(parents=True, exist_ok=True)
        proxy_env = example_env(self.folder, self.port, [instance.port for instance in self.instances])
        # The example ships with two server lines; one instance keeps the second pointing at the first.
        config = example_for(self.folder, max(self.size, 2))
        proxy_env.setdefault("MCP_SERVER_2", proxy_env["MCP_SERVER_1"])
        trust = self.folder / "trust.pem"
        self._stack.enter_context(proxy(proxy_env, trust, self.port, config))
        self.tls = ssl.create_default_context(cafile=trust)
        self.proxy_pid = haproxy_pid(self.port)
        self.bearer = lambda base: access_token(base, self.tls or True)

    def prepare(self) -> None:
        super().prepare()
        self.headers["Host"] = f"localhost:{self.port}"  # wrk adds its own unless spelt so

    def cpu_seconds(self) -> float:
        return sum(instance.cpu_seconds() for instance in self.instances)

    def peak_rss_mb(self) -> float:
        return max(instance.peak_rss_mb() for instance in self.instances)

    def stop(self) -> None:
        self._stack.close()


def haproxy_pid(port: int) -> int:
    """The HAProxy process listening on `port` (its socket's inode, found in /proc)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1].endswith(f":{port:04X}") and parts[3] == "0A":  # LISTEN
            inodes.add(parts[9])
    for fd in Path("/proc").glob("[0-9]*/fd/*"):
        with contextlib.suppress(OSError):
            target = fd.readlink().as_posix()
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return int(fd.parent.parent.name)
    raise RuntimeError(f"no process listens on port {port}")


@contextlib.contextmanager
def shared_store(kind: str) -> Iterator[Callable[[], dict[str, str]]]:
    """A store server for the run; each call gives a fleet's settings (PostgreSQL: a database of its own)."""
    if kind == "postgres":
        with running_cluster() as cluster:
            yield lambda: {"BASTION_STORE__BACKEND": "postgres", "BASTION_STORE__URL": cluster.database()}
    else:
        with running_server() as redis:
            yield lambda: {"BASTION_STORE__BACKEND": "redis", "BASTION_STORE__URL": redis.url}


def main() -> int:
    parser = options(__doc__.split("\n\n")[0])
    parser.add_argument("--max", type=int, default=3, help="the largest fleet (default 3)")
    parser.add_argument("--store", choices=("redis", "postgres"), default="redis")
    args = parser.parse_args()
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp, shared_store(args.store) as store:
        workdir = Path(tmp)
        shared = authorization_server()
        fleets = [
            Fleet(
                f"{n} instance{'s' if n > 1 else ''}",
                BASTION,
                env=shared,
                size=n,
                folder=workdir / f"f{n}",
                store=store,
            )
            for n in range(1, args.max + 1)
        ]

        def run(target: Target, seconds: int) -> dict[str, float]:
            assert isinstance(target, Fleet)
            bastion, haproxy, began = target.cpu_seconds(), process_cpu_seconds(target.proxy_pid), time.monotonic()
            # wrk loads the proxy by address; the Host header names localhost.
            address = f"https://127.0.0.1:{target.port}/mcp"
            figures = load(wrk, target, seconds, args.connections, workdir, url=address)
            elapsed = time.monotonic() - began
            return {
                **figures,
                "cores": (target.cpu_seconds() - bastion) / elapsed,
                "proxy_cores": (process_cpu_seconds(target.proxy_pid) - haproxy) / elapsed,
            }

        with started(list(fleets)):
            summary = in_turn(list(fleets), args.rounds, args.seconds, run)
    print(
        f"authenticated tools/call add(a, b) through HAProxy (TLS), store {args.store}; wrk 1 thread, "
        f"{args.connections} connections, {args.rounds} rounds x {args.seconds}s, medians"
    )
    print(
        f"{'fleet':14} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'Bastion cores':>14} {'HAProxy cores':>14} {'vs 1':>6}"
    )
    one = summary[fleets[0].name]["rps"]
    for name, s in summary.items():
        print(
            f"{name:14} {s['rps']:9.0f} {s['p50']:8.2f} {s['p99']:8.2f} {s['cores']:14.2f} "
            f"{s['proxy_cores']:14.2f} {s['rps'] / one:6.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
