"""Benchmark: what watching Bastion costs on authenticated tools/call, in one run, over loopback.

    .venv/bin/python bench/operations.py [--seconds 8] [--rounds 3] [--connections 32]

The same `add` tool, with Bastion's authorization server and a token obtained through the real flow, served
with the access log off, and on in each format, its lines written to a file (as a service manager or a
log shipper would take them; /dev/null would flatter it). Target (issue 11): >= 0.90 x all off with the
access log on.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sign_in import access_token
from tools_call import BASTION, Target, arguments, measure


def main() -> int:
    args = arguments(__doc__.split("\n\n")[0])
    with tempfile.TemporaryDirectory() as tmp:
        auth_env = {
            "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
            "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
            "BASTION_STORE__PATH": str(Path(tmp) / "bench.db"),
        }

        def target(name: str, **settings: str) -> Target:
            env = {**auth_env, **settings}
            return Target(name, BASTION, env=env, bearer=access_token, log=Path(tmp) / f"{name}.log")

        targets = [
            target("all off", BASTION_ACCESS_LOG="false"),
            target("access log, text", BASTION_ACCESS_LOG="true", BASTION_LOG_FORMAT="text"),
            target("access log, json", BASTION_ACCESS_LOG="true", BASTION_LOG_FORMAT="json"),
        ]
        summary, _ = measure(targets, args)
        written = {t.name: (t.log.stat().st_size if t.log and t.log.exists() else 0) for t in targets}
    base = summary["all off"]
    print(
        f"authenticated tools/call add(a, b), 2026-07-28; wrk 1 thread, {args.connections} connections, "
        f"{args.rounds} rounds x {args.seconds}s, medians"
    )
    print(f"{'target':18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s ratio':>12} {'log MB':>8}")
    for name, s in summary.items():
        ratio = s["rps"] / base["rps"]
        print(f"{name:18} {s['rps']:9.0f} {s['p50']:8.2f} {s['p99']:8.2f} {ratio:12.2f} {written[name] / 1e6:8.1f}")
    ok = all(summary[name]["rps"] / base["rps"] >= 0.9 for name in summary if name != "all off")
    print("target (access log on >= 0.90 x all off):", "MET" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
