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
from collections.abc import Sequence
from typing import Any, TypeVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.registry import Collector

from .tally import TallyCounter, TallyGauge, TallyHistogram

MULTIPROCESS = "PROMETHEUS_MULTIPROC_DIR"
# The semantic conventions' advice for MCP operation durations, in seconds.
OPERATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
STORE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5)
C = TypeVar("C", bound=Collector)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # Under --workers every value goes to the shared folder through prometheus_client's classes; in one
        # process, lists the loop changes without locks (ops/tally.py).
        self._families = _Shared(self.registry) if os.environ.get(MULTIPROCESS) else _Tallied(self.registry)
        f = self._families
        self._operations = f.histogram(
            "mcp_server_operation_duration_seconds",
            "MCP request duration as observed on the server, from its receipt to its result (or error).",
            ("mcp_method_name", "gen_ai_tool_name", "gen_ai_prompt_name", "error_type", "mcp_protocol_version"),
            OPERATION_BUCKETS,
        )
        self._decisions = f.counter(
            "bastion_authorization_decisions",
            "Requests to the MCP endpoint admitted or refused by the bearer gate, by reason.",
            ("decision", "reason"),
        )
        self._events = f.counter(
            "bastion_security_events",
            "Security events (the audit trail's types: token.issued, token.refreshed, grant.revoked, ...).",
            ("type", "outcome"),
        )
        self._store = f.histogram(
            "bastion_store_operation_duration_seconds",
            "Store operations (get, get_many, commit, keys), successful or not.",
            ("backend", "operation"),
            STORE_BUCKETS,
        )
        self._store_errors = f.counter(
            "bastion_store_errors",
            "Store operations that failed (the store unreachable, locked or full).",
            ("backend", "operation"),
        )
        self._sessions = f.gauge(
            "bastion_mcp_sessions", "Open MCP sessions (2025-06-18 and 2025-11-25 clients) held by this server."
        )
        self._renewals = f.counter(
            "bastion_upstream_renewals",
            "Renewals of users' upstream tokens at their provider: renewed, refused (sign in again) or failed.",
            ("provider", "outcome"),
        )

    # --- what the parts of the server report ------------------------------------------------------------
    def operation(self, method: str, tool: str, prompt: str, error: str, version: str, seconds: float) -> None:
        self._operations.observe((method, tool, prompt, error, version), seconds)

    def decision(self, decision: str, reason: str) -> None:
        self._decisions.inc((decision, reason))

    def security_event(self, kind: str, outcome: str) -> None:
        self._events.inc((kind, outcome))

    def store_operation(self, backend: str, operation: str, seconds: float, failed: bool) -> None:
        self._store.observe((backend, operation), seconds)
        if failed:
            self._store_errors.inc((backend, operation))

    def sessions(self, change: int) -> None:
        self._sessions.inc(change)

    def renewal(self, provider: str, outcome: str) -> None:
        self._renewals.inc((provider, outcome))

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


class _Tallied:
    """Families of ops/tally.py, registered with the registry that scrapes read."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def histogram(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> TallyHistogram:
        return self._registered(TallyHistogram(name, doc, labels, buckets))

    def counter(self, name: str, doc: str, labels: Sequence[str]) -> TallyCounter:
        return self._registered(TallyCounter(name, doc, labels))

    def gauge(self, name: str, doc: str) -> TallyGauge:
        return self._registered(TallyGauge(name, doc))

    def _registered(self, collector: C) -> C:
        self.registry.register(collector)
        return collector


class _Shared:
    """prometheus_client's own families (their values in the workers' shared folder), used through the same
    calls as the tallies."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry

    def histogram(self, name: str, doc: str, labels: Sequence[str], buckets: Sequence[float]) -> _Labelled:
        return _Labelled(Histogram(name, doc, labels, buckets=buckets, registry=self.registry))

    def counter(self, name: str, doc: str, labels: Sequence[str]) -> _Labelled:
        return _Labelled(Counter(name, doc, labels, registry=self.registry))

    def gauge(self, name: str, doc: str) -> Gauge:
        return Gauge(name, doc, registry=self.registry, multiprocess_mode="livesum")


class _Labelled:
    """A labelled family, its children kept: finding one by its labels costs more than using it."""

    def __init__(self, family: Any) -> None:
        self.family = family
        self._children: dict[tuple[str, ...], Any] = {}

    def _child(self, labels: tuple[str, ...]) -> Any:
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = self.family.labels(*labels)
        return child

    def observe(self, labels: tuple[str, ...], amount: float) -> None:
        self._child(labels).observe(amount)

    def inc(self, labels: tuple[str, ...], amount: float = 1) -> None:
        self._child(labels).inc(amount)
