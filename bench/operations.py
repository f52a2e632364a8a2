"""Benchmark: what watching Bastion costs on authenticated tools/call, in one run, over loopback.

    .venv/bin/python bench/operations.py [--seconds 8] [--rounds 3] [--connections 32]

The same `add` tool, with Bastion's authorization server and a token obtained through the real flow, served
with the access log off, and on in each format, its lines written to a file (as a service manager or a
log shipper would take them; /dev/null would flatter it); then with Prometheus metrics on as well, and with
OpenTelemetry tracing on as well, every request sampled and its spans exported over OTLP/HTTP to a sink in this
process (which answers as a collector would, and counts what it received): as protobuf (OTLP's default) and as
JSON (OTEL_EXPORTER_OTLP_PROTOCOL=http/json), both encoded by Bastion's own pipeline (ops/otlp.py). Targets
(issue 11): >= 0.90 x all off with the access log on, and with logs and metrics; >= 0.80 x with tracing as well.
"""

from __future__ import annotations

import sys
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sign_in import access_token
from tools_call import BASTION, Target, arguments, measure


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver that keeps nothing: it reads each export and answers 200, counting the bytes. It keeps
    connections open, as collectors do (HTTP/1.0 would make the exporter connect for every post)."""

    protocol_version = "HTTP/1.1"
    received = 0

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        Collector.received += len(self.rfile.read(length))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


LIMITS = {"access log, text": 0.9, "access log, json": 0.9, "logs + metrics": 0.9, "logs + metrics + tracing": 0.8}


def main() -> int:
    args = arguments(__doc__.split("\n\n")[0])
    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    otlp = f"http://127.0.0.1:{collector.server_address[1]}"
    with tempfile.TemporaryDirectory() as tmp:
        auth_env = {
            "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
            "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
            "BASTION_STORE__PATH": str(Path(tmp) / "bench.db"),
        }

        def target(name: str, **settings: str) -> Target:
            env = {**auth_env, **settings}
            return Target(name, BASTION, env=env, bearer=access_token, log=Path(tmp) / f"{name}.log")

        # Every request sampled; spans posted to the collector above (as protobuf unless told otherwise).
        tracing = {
            "BASTION_ACCESS_LOG": "true",
            "BASTION_METRICS__ENABLED": "true",
            "BASTION_TRACING__ENABLED": "true",
            "OTEL_TRACES_SAMPLER": "always_on",
            "OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
            "OTEL_SERVICE_NAME": "bench",
        }
        targets = [
            target("all off", BASTION_ACCESS_LOG="false"),
            target("access log, text", BASTION_ACCESS_LOG="true", BASTION_LOG_FORMAT="text"),
            target("access log, json", BASTION_ACCESS_LOG="true", BASTION_LOG_FORMAT="json"),
            target("logs + metrics", BASTION_ACCESS_LOG="true", BASTION_METRICS__ENABLED="true"),
            target("logs + metrics + tracing", **tracing),
            target("logs + metrics + tracing (json)", **tracing, OTEL_EXPORTER_OTLP_PROTOCOL="http/json"),
        ]
        summary, _ = measure(targets, args)
        written = {t.name: (t.log.stat().st_size if t.log and t.log.exists() else 0) for t in targets}
    base = summary["all off"]
    print(
        f"authenticated tools/call add(a, b), 2026-07-28; wrk 1 thread, {args.connections} connections, "
        f"{args.rounds} rounds x {args.seconds}s, medians"
    )
    print(f"{'target':32} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s ratio':>12} {'log MB':>8}")
    for name, s in summary.items():
        ratio = s["rps"] / base["rps"]
        print(f"{name:32} {s['rps']:9.0f} {s['p50']:8.2f} {s['p99']:8.2f} {ratio:12.2f} {written[name] / 1e6:8.1f}")
    print(f"spans exported over OTLP/HTTP: {Collector.received / 1e6:.1f} MB")
    ok = True
    for name, limit in LIMITS.items():
        held = summary[name]["rps"] / base["rps"] >= limit
        ok &= held
        print(f"target ({name} >= {limit:.2f} x all off):", "MET" if held else "NOT MET")
    collector.shutdown()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
