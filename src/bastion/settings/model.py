"""Settings: the top-level options and one section per role, loaded, described and checked by the modules named
in each method."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import Field

from .admin import AdminSettings
from .audit import AuditSettings
from .authorization import AuthorizationServerSettings
from .check import start_up_problems
from .connections import ConnectionSettings
from .errors import SettingsError
from .gateway import GatewaySettings
from .limits import LimitsSettings
from .load import describe as describe_settings
from .load import load as load_settings
from .policy import PolicySettings
from .resource import ResourceSettings
from .server import ServerSettings
from .store import StoreSettings
from .telemetry import MetricsSettings, TracingSettings
from .worker import WorkerSettings


class Settings(ServerSettings):
    authorization_server: AuthorizationServerSettings = Field(default_factory=AuthorizationServerSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    resource: ResourceSettings = Field(default_factory=ResourceSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    admin: AdminSettings = Field(default_factory=AdminSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    tracing: TracingSettings = Field(default_factory=TracingSettings)
    connections: list[ConnectionSettings] = Field(
        default_factory=list,
        description="Third-party accounts users connect for tools to act for them ([[connections]]).",
    )

    @property
    def authenticated(self) -> bool:
        return self.authorization_server.enabled or bool(self.resource.issuers)

    @property
    def state_key(self) -> bytes | None:
        """The key that seals state handed to clients (MRTR request state, sessions' MACs), when one is set: every
        instance and worker must share it; without it each process draws its own."""
        return self.state_secret.get_secret_value().encode() if self.state_secret else None

    @property
    def shared_by_processes(self) -> bool:
        """Whether other processes serve from the same store: other instances (postgres, redis), or the other
        workers on the one SQLite file. Then sessions, notifications and revocations go through it."""
        return self.store.shared or (self.store.backend == "sqlite" and self.workers > 1)

    def check(self) -> None:
        """Refuse combinations that would expose an unauthenticated server (settings/check.py)."""
        if problems := start_up_problems(self):
            raise SettingsError("\n".join(problems))

    @classmethod
    def describe(cls) -> list[tuple[str, str, Any, str]]:
        """(dotted name, environment variable, default, description) for every setting, sections included."""
        return describe_settings(cls)

    @classmethod
    def load(
        cls,
        config_file: str | Path | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """Defaults, then the TOML file, then BASTION_* variables, then explicit overrides (CLI flags)."""
        return load_settings(cls, config_file, env, overrides)
