"""[metrics] and [tracing]: what operators' monitoring reads (docs/operations.md#metrics, #tracing)."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .secret_strength import weakness
from .values import ip_networks

# What Bastion can export spans with (OTEL_TRACES_EXPORTER), and the samplers its own pipeline has (ops/otlp.py);
# each of those also in a parentbased_ form (OTEL_TRACES_SAMPLER).
EXPORTERS = frozenset({"otlp", "console", "none", ""})
SAMPLERS = ("always_on", "always_off", "traceidratio")


def trace_exporters(environ: Mapping[str, str]) -> set[str]:
    """The exporters OTEL_TRACES_EXPORTER names: otlp when it is unset."""
    return {name.strip() for name in (environ.get("OTEL_TRACES_EXPORTER") or "otlp").split(",")}


class MetricsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(False, description="Serve Prometheus metrics (needs the metrics extra: prometheus_client).")
    path: str = Field("/metrics", description="Where metrics are served.")
    port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="Serve metrics on this port of metrics.host instead of the MCP port (then no Host check "
        "applies: scrapers reach it by any address).",
    )
    host: str = Field("127.0.0.1", description="Address the metrics port binds (with metrics.port).")
    allow_from: list[str] = Field(
        default_factory=lambda: ["127.0.0.1", "::1"],
        description="Addresses or networks (CIDR) that may read metrics without a token. Only this machine by default.",
    )
    token_env: str | None = Field(
        None,
        description="Environment variable holding a bearer token: a scraper sending it (Prometheus: "
        "authorization.credentials_file) may read metrics from any address.",
    )

    @field_validator("allow_from")
    @classmethod
    def _allow_from(cls, value: list[str]) -> list[str]:
        return ip_networks(value, "scrapers'")

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/") or any(c in value for c in "?#") or len(value) < 2:
            raise ValueError("metrics.path must start with '/' and have no query or fragment, e.g. /metrics")
        return value

    def token(self) -> str | None:
        return os.environ.get(self.token_env) if self.token_env else None

    def problems(self) -> list[str]:
        if not self.enabled:
            return []
        lines = []
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            lines.append("metrics.enabled needs prometheus_client: pip install 'mcp-bastion[metrics]'")
        label = f"the metrics token in {self.token_env} (named by metrics.token_env)"
        if self.token_env and (problem := weakness(self.token(), label)):
            lines.append(problem)
        return lines


class TracingSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(
        False,
        description="Trace MCP requests, token checks, store operations and upstream calls with OpenTelemetry "
        "(needs the otel extra); export is configured by the standard OTEL_* variables.",
    )

    def problems(self) -> list[str]:
        if not self.enabled:
            return []
        try:
            import opentelemetry.sdk.trace  # noqa: F401
        except ImportError:
            return ["tracing.enabled needs OpenTelemetry: pip install 'mcp-bastion[otel]'"]
        env = os.environ
        exporters = trace_exporters(env)
        if unknown := exporters - EXPORTERS:
            names = ", ".join(sorted(unknown))
            return [f"OTEL_TRACES_EXPORTER names {names}: Bastion exports with otlp, console or none"]
        protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
        if protocol not in (None, "", "http/protobuf", "http/json"):
            return [f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r}: Bastion exports over http/protobuf or http/json"]
        if protocol == "http/json" and exporters != {"otlp"}:
            return ["OTEL_EXPORTER_OTLP_PROTOCOL=http/json exports with otlp alone: unset OTEL_TRACES_EXPORTER"]
        if exporters == {"otlp"}:  # Bastion's own pipeline (ops/otlp.py), with the samplers it has
            sampler = env.get("OTEL_TRACES_SAMPLER") or "parentbased_always_on"
            if sampler.removeprefix("parentbased_") not in SAMPLERS:
                return [
                    f"OTEL_TRACES_SAMPLER={sampler!r}: use always_on, always_off, traceidratio or their "
                    "parentbased_ forms"
                ]
        return []
