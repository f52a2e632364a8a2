"""Benchmark: tools/call through Bastion's gateway to an HTTP backend, against the same backend called directly.

    .venv/bin/python bench/gateway.py [--seconds 8] [--rounds 3] [--connections 32]

The backend is Bastion serving bench/add_server.py; the gateway is another Bastion process with no tools of its
own and the backend in [[gateway.servers]] (2026-07-28 between them). Both unauthenticated on loopback: this
measures the relay, not sign-in. Gateway and backend share this machine's cores with wrk. Prints req/s, p50 and
p99 of each, the ratio and the latency the gateway adds. Target (issue 12): >= 0.5 x direct, added p50 <= 1 ms.
"""

from __future__ import annotations

import json
import sys
import time

from tools_call import BASTION, PYTHON, QUIET, Target, arguments, free_port, measure


def main() -> int:
    args = arguments(__doc__.split("\n\n")[0])
    backend_port = free_port()
    backend = Target("direct", BASTION, env=QUIET, fixed_port=backend_port)
    servers = [{"name": "backend", "url": f"http://127.0.0.1:{backend_port}/mcp", "protocol_version": "2026-07-28"}]
    front = [PYTHON, "-m", "bastion.cli", "serve", "bench/empty_server.py", "--port", "{port}"]
    gateway = Fronting("through the gateway", front, env={**QUIET, "BASTION_GATEWAY__SERVERS": json.dumps(servers)})
    summary, rss = measure([backend, gateway], args)  # in this order: the gateway lists the backend's tools
    direct, through = summary["direct"], summary["through the gateway"]
    ratio = through["rps"] / direct["rps"]
    added_p50, added_p99 = through["p50"] - direct["p50"], through["p99"] - direct["p99"]
    runs = f"{args.rounds} x {args.seconds}s"
    print(f"tools/call add(a, b), 2026-07-28; wrk 1 thread, {args.connections} connections, {runs}")
    print(f"{'target':22} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'peak RSS MB':>12}")
    for name, s in summary.items():
        print(f"{name:22} {s['rps']:9.0f} {s['p50']:8.2f} {s['p99']:8.2f} {rss[name]:12.1f}")
    print(f"ratio {ratio:.2f}; added p50 {added_p50:.2f} ms, p99 {added_p99:.2f} ms")
    held = ratio >= 0.5 and added_p50 <= 1.0
    print("target (>= 0.5 x direct, added p50 <= 1 ms):", "MET" if held else "NOT MET")
    return 0 if held else 1


class Fronting(Target):
    """The gateway: ready once it lists the backend's tools (it does so as it starts)."""

    def prepare(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                super().prepare()
                return
            except (AssertionError, KeyError, OSError):  # unknown tool (400) until listed
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)


if __name__ == "__main__":
    sys.exit(main())
