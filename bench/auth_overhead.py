"""Benchmark: what checking an access token costs on tools/call, in one run, over loopback.

    .venv/bin/python bench/auth_overhead.py [--seconds 8] [--rounds 3] [--connections 32]

Loads the same `add` tool on Bastion without authentication, with its own authorization server (a token
obtained through the real flow: register, authorize, dev login, token), and trusting an external issuer (an RS256
JWT access token checked against the issuer's JWK Set, fetched over HTTP from a local issuer). Target: each
authenticated row's requests/s within 10% of unauthenticated (ratio >= 0.90).
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from sign_in import access_token
from tools_call import BASTION, ROOT, Target, arguments, measure

sys.path.insert(0, str(ROOT))
from tests.jwt_issuer import LocalIssuer, local_issuer


def external_jwt(issuer: LocalIssuer):
    def bearer(base: str) -> str:
        return issuer.mint(issuer.claims(f"{base}/mcp", exp=int(time.time()) + 3600))

    return bearer


def main() -> int:
    args = arguments(__doc__.split("\n\n")[0])
    with tempfile.TemporaryDirectory() as tmp, local_issuer() as issuer:
        config = Path(tmp) / "external.toml"
        config.write_text(f'[[resource.issuers]]\nname = "corp"\nissuer = "{issuer.issuer}"\n')
        auth_env = {
            "BASTION_AUTHORIZATION_SERVER__ENABLED": "true",
            "BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true",
            "BASTION_STORE__PATH": str(Path(tmp) / "bench.db"),
        }
        targets = [
            Target("unauthenticated", BASTION),
            Target("authenticated", BASTION, env=auth_env, bearer=access_token),
            Target("external JWT", BASTION, env={"BASTION_CONFIG": str(config)}, bearer=external_jwt(issuer)),
        ]
        summary, _ = measure(targets, args)
    base = summary["unauthenticated"]
    print(
        f"tools/call add(a, b), 2026-07-28; wrk 1 thread, {args.connections} connections, "
        f"{args.rounds} rounds x {args.seconds}s, medians"
    )
    print(f"{'target':18} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'req/s ratio':>12}")
    for name, s in summary.items():
        print(f"{name:18} {s['rps']:9.0f} {s['p50']:8.2f} {s['p99']:8.2f} {s['rps'] / base['rps']:12.2f}")
    ok = all(summary[name]["rps"] / base["rps"] >= 0.9 for name in ("authenticated", "external JWT"))
    print("target (each authenticated row >= 0.90 x unauthenticated):", "MET" if ok else "NOT MET")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
