"""Benchmark: the store backends under authenticated tools/call and under /token refreshes, in one run.

    .venv/bin/python bench/backends.py [--seconds 8] [--rounds 3] [--connections 32] [--grants N]

One `bastion serve bench/add_server.py` with its own authorization server per backend: SQLite (the baseline),
PostgreSQL and Redis, each started as the tests start them (tests/services/: a throwaway cluster and server on
free loopback ports, removed at the end). wrk loads them in turn, round after round, as in bench/tools_call.py:
1. tools/call `add` with an access token obtained through the real flow. A verified token is remembered, so the
   store is hardly touched: target, PostgreSQL and Redis >= 0.90 x SQLite.
2. refresh_token grants on /token: a pool of grants, each signed in through the real flow, refreshed in
   parallel; every refresh rotates its token (the response's new token goes back in wrk's queue, and what is
   left of the queue carries over to the next round). Reported: refreshes/s, p99, and refreshes/s per core the
   Bastion process used (its CPU time over the run); the store server's own cores are shown beside. Targets:
   >= 1000 refreshes/s per Bastion core on SQLite, PostgreSQL and Redis >= 0.80 x SQLite.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sign_in import access_token, authorization_server, grants
from tools_call import BASTION, ROOT, Target, ensure_wrk, in_turn, load, options, process_cpu_seconds, started

sys.path.insert(0, str(ROOT))
from tests.services.postgres import running_cluster
from tests.services.redis import running_server

# Rotating refresh tokens: a queue per wrk thread. Each request takes the oldest token, each answer puts its new
# token at the back; at the end, what is left of the queue is written back for the next round (the tokens of
# requests still in flight when wrk stops are lost, which --grants allows for).
REFRESH_LUA = """
client, tokens = %(client)s, %(tokens)s
queue, head, tail = {}, 1, 0
threads = {}

function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  for line in io.lines(tokens) do tail = tail + 1; queue[tail] = line end
end

function request()
  local token = "exhausted"  -- answered 400, which fails the run: raise --grants
  if head <= tail then token = queue[head]; queue[head] = nil; head = head + 1 end
  return wrk.format("POST", "/token", {["Content-Type"] = "application/x-www-form-urlencoded"},
    "grant_type=refresh_token&client_id=" .. client .. "&refresh_token=" .. token)
end

function response(status, headers, body)
  local token = body:match('"refresh_token"%%s*:%%s*"([^"]+)"')
  if token then tail = tail + 1; queue[tail] = token end
end

function done(summary, latency, requests)
  local out = io.open(tokens, "w")
  for _, thread in ipairs(threads) do
    local left, first, last = thread:get("queue"), thread:get("head"), thread:get("tail")
    for i = first, last do out:write(left[i], "\\n") end
  end
  out:close()
end
"""


@contextlib.contextmanager
def stores(workdir: Path) -> Iterator[dict[str, tuple[dict[str, str], Callable[[], list[int]]]]]:
    """Per backend: its settings and the processes of its store server (none for SQLite, in Bastion's own)."""
    with running_cluster() as postgres, running_server() as redis:
        yield {
            "sqlite": ({"BASTION_STORE__PATH": str(workdir / "bench.db")}, list),
            "postgres": (
                {"BASTION_STORE__BACKEND": "postgres", "BASTION_STORE__URL": postgres.database()},
                postgres.processes,
            ),
            "redis": (
                {"BASTION_STORE__BACKEND": "redis", "BASTION_STORE__URL": redis.url},
                lambda: [redis.process.pid] if redis.process else [],
            ),
        }


def cpu_of(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(OSError):  # a backend process that has just ended
            total += process_cpu_seconds(pid)
    return total


def main() -> int:
    parser = options(__doc__.split("\n\n")[0])
    parser.add_argument("--grants", type=int, help="grants per backend (default: connections x (rounds + 3))")
    args = parser.parse_args()
    pool = args.grants or args.connections * (args.rounds + 3)
    wrk = ensure_wrk()
    with tempfile.TemporaryDirectory() as tmp, stores(Path(tmp)) as backends:
        workdir = Path(tmp)
        shared = authorization_server()
        targets = [
            Target(name, BASTION, env={**shared, **env}, bearer=access_token) for name, (env, _) in backends.items()
        ]
        with started(targets):
            calls = in_turn(
                targets,
                args.rounds,
                args.seconds,
                lambda target, seconds: load(wrk, target, seconds, args.connections, workdir),
            )
            scripts = {}
            for target in targets:
                client, tokens = grants(target.base, pool)
                (workdir / f"{target.name}.tokens").write_text("\n".join(tokens) + "\n")
                scripts[target.name] = REFRESH_LUA % {
                    "client": f'"{client}"',
                    "tokens": f'"{workdir / f"{target.name}.tokens"}"',
                }

            def refresh(target: Target, seconds: int) -> dict[str, float]:
                store = backends[target.name][1]
                bastion, waited, server = target.cpu_seconds(), target.waited_seconds(), cpu_of(store())
                began = time.monotonic()
                figures = load(
                    wrk, target, seconds, args.connections, workdir, scripts[target.name], f"{target.base}/token"
                )
                elapsed = time.monotonic() - began
                left = len((workdir / f"{target.name}.tokens").read_text().split())
                if left < args.connections:
                    raise RuntimeError(f"{target.name}: {left} grants left for {args.connections} connections")
                cores = (target.cpu_seconds() - bastion) / elapsed
                return {**figures, "cores": cores, "per_core": figures["rps"] / cores,
                        "starved": (target.waited_seconds() - waited) / elapsed,
                        "store_cores": (cpu_of(store()) - server) / elapsed}  # fmt: skip

            refreshes = in_turn(targets, args.rounds, args.seconds, refresh)
    return report(args, pool, calls, refreshes)


Figures = dict[str, dict[str, float]]


def report(args: argparse.Namespace, pool: int, calls: Figures, refreshes: Figures) -> int:
    print(f"wrk 1 thread, {args.connections} connections, {args.rounds} rounds x {args.seconds}s, medians")
    print("\nauthenticated tools/call add(a, b), 2026-07-28")
    print(f"{'backend':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'vs sqlite':>10}")
    base = calls["sqlite"]["rps"]
    for name, s in calls.items():
        print(f"{name:10} {s['rps']:9.0f} {s['p50']:8.2f} {s['p99']:8.2f} {s['rps'] / base:10.2f}")
    calls_ok = all(calls[name]["rps"] / base >= 0.9 for name in ("postgres", "redis"))
    print(f"\n/token refresh_token grant, {pool} grants per backend, each refresh rotating its token")
    print(
        f"{'backend':10} {'refresh/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'Bastion cores':>14} {'per core':>9} "
        f"{'CPU waits':>10} {'store cores':>12} {'vs sqlite':>10}"
    )
    base = refreshes["sqlite"]["rps"]
    for name, s in refreshes.items():
        print(
            f"{name:10} {s['rps']:10.0f} {s['p50']:8.2f} {s['p99']:8.2f} {s['cores']:14.2f} {s['per_core']:9.0f} "
            f"{s['starved']:10.2f} {s['store_cores']:12.2f} {s['rps'] / base:10.2f}"
        )
    refresh_ok = refreshes["sqlite"]["per_core"] >= 1000 and all(
        refreshes[name]["rps"] / base >= 0.8 for name in ("postgres", "redis")
    )
    print("target (tools/call: postgres and redis >= 0.90 x sqlite):", "MET" if calls_ok else "NOT MET")
    print("(CPU waits: cores' worth of time Bastion's threads were runnable but waiting for a CPU; a busy machine)")
    print(
        "target (refresh: >= 1000/s per Bastion core on sqlite; postgres and redis >= 0.80 x sqlite):",
        "MET" if refresh_ok else "NOT MET",
    )
    return 0 if calls_ok and refresh_ok else 1


if __name__ == "__main__":
    sys.exit(main())
