"""Prometheus metrics: what Bastion counts and times, in one registry per server (docs/operations.md#metrics).

MCP operations are named after the OpenTelemetry MCP semantic conventions (`mcp.server.operation.duration` is
`mcp_server_operation_duration_seconds`, its attributes the labels `mcp_method_name`, `gen_ai_tool_name`,
`gen_ai_prompt_name`, `error_type`, `mcp_protocol_version`); Bastion's own are prefixed `bastion_`. Every label
value comes from a bounded set: a tool or prompt is named only when it is registered (a client may send any
name), errors by JSON-RPC code or class name, never a resource URI, subject or token.

With `bastion serve --workers N` the workers share a folder (PROMETHEUS_MULTIPROC_DIR, set by the parent before
it starts them) and every scrape adds up all of them (`exposition`).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"
# The semantic conventions' advice for MCP operation durations, in seconds.
OPERATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self._operations = Histogram(
            "mcp_server_operation_duration_seconds",
            "MCP request duration as observed on the server, from its receipt to its result (or error).",
            ("mcp_method_name", "gen_ai_tool_name", "gen_ai_prompt_name", "error_type", "mcp_protocol_version"),
            buckets=OPERATION_BUCKETS,
            registry=r,
        )
        self._decisions = Counter(
            "bastion_authorization_decisions",
            "Requests to the MCP endpoint admitted or refused by the bearer gate, by reason.",
            ("decision", "reason"),
            registry=r,
        )
        self._events = Counter(
            "bastion_security_events",
            "Security events (the audit trail's types: token.issued, token.refreshed, grant.revoked, ...).",
            ("type", "outcome"),
            registry=r,
        )
        self._store = Histogram(
            "bastion_store_operation_duration_seconds",
            "Store operations (get, get_many, commit, keys), successful or not.",
            ("backend", "operation"),
            buckets=STORE_BUCKETS,
            registry=r,
        )
        self._store_errors = Counter(
            "bastion_store_errors",
            "Store operations that failed (the store unreachable, locked or full).",
            ("backend", "operation"),
            registry=r,
        )
        self._sessions = Gauge(
            "bastion_mcp_sessions",
            "Open MCP sessions (2025-06-18 and 2025-11-25 clients) held by this server.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self._renewals = Counter(
            "bastion_upstream_renewals",
            "Renewals of users' upstream tokens at their provider: renewed, refused (sign in again) or failed.",
            ("provider", "outcome"),
            registry=r,
        )
        # Labelled children, kept: finding one by its labels costs more than using it (about 1.4 us against 0.6).
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, family: Any, *labels: str) -> Any:
        key = (id(family), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = family.labels(*labels)
        return child

    # --- what the parts of the server report ------------------------------------------------------------
    def operation(self, method: str, tool: str, prompt: str, error: str, version: str, seconds: float) -> None:
        self._child(self._operations, method, tool, prompt, error, version).observe(seconds)

    def decision(self, decision: str, reason: str) -> None:
        self._child(self._decisions, decision, reason).inc()

    def security_event(self, kind: str, outcome: str) -> None:
        self._child(self._events, kind, outcome).inc()

    def store_operation(self, backend: str, operation: str, seconds: float, failed: bool) -> None:
        self._child(self._store, backend, operation).observe(seconds)
        if failed:
            self._child(self._store_errors, backend, operation).inc()

    def sessions(self, change: int) -> None:
        self._sessions.inc(change)

    def renewal(self, provider: str, outcome: str) -> None:
        self._child(self._renewals, provider, outcome).inc()

    # --- what a scrape reads ------------------------------------------------------------------------------
    def exposition(self) -> tuple[bytes, str]:
        """The text format Prometheus reads, and its content type: every worker's values added up under
        --workers, this server's own otherwise."""
        if os.environ.get(MULTIPROCESS):
            return self.every_worker()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    @staticmethod
    def every_worker() -> tuple[bytes, str]:
        """The exposition of the values every worker writes in the shared folder (read in any worker, or in the
        parent process that serves the metrics port)."""
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry), CONTENT_TYPE_LATEST
