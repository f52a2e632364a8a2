"""[store]: where grants, tokens and clients are kept, and how the network backends are reached."""

from __future__ import annotations

import importlib.util
import os
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr

# The URL schemes each network backend accepts.
SCHEMES = {"postgres": ("postgresql", "postgres"), "redis": ("redis", "rediss")}
SHARED = frozenset(SCHEMES)  # backends several instances (on several machines) use at once


class StoreSettings(BaseModel):
    """The storage backend."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "memory", "postgres", "redis"] = Field(
        "sqlite",
        description="Where grants, tokens and clients live: sqlite (one machine), memory (tests; lost on exit), "
        "postgres or redis (shared by many instances).",
    )
    path: str = Field("bastion.db", description="The SQLite file.")
    url: SecretStr | None = Field(
        None,
        description="postgres: postgresql://host/db; redis: redis:// or rediss://host:6379/0. Without a password: "
        "a URL with credentials goes in the variable named by url_env.",
    )
    url_env: str | None = Field(
        None, description="Environment variable holding the store URL (use it when the URL carries a password)."
    )
    cluster: bool | None = Field(
        None, description="redis: whether the URL names a node of a Redis Cluster (unset: asked of the server)."
    )

    @property
    def shared(self) -> bool:
        return self.backend in SHARED

    def connection_url(self) -> str | None:
        """The network backend's URL: from the variable named by url_env, else url; None when neither is set."""
        if self.url_env:
            return os.environ.get(self.url_env) or None
        return self.url.get_secret_value() if self.url else None

    def problems(self) -> list[str]:
        """Why this section cannot be used, one line each naming the setting and the fix."""
        lines = []
        if self.cluster is not None and self.backend != "redis":
            lines.append("store.cluster is for backend = 'redis' only: remove it")
        if not self.shared:
            if self.url is not None or self.url_env:
                lines.append(f"store.url and store.url_env are for postgres and redis, not {self.backend}: remove them")
            return lines
        driver = {"postgres": "asyncpg", "redis": "redis"}[self.backend]
        if importlib.util.find_spec(driver) is None:
            lines.append(f"backend = {self.backend!r} needs {driver}: pip install 'mcp-bastion[{self.backend}]'")
        if self.url is not None and self.url_env:
            lines.append("store.url and store.url_env are both set: keep one (url_env when the URL has a password)")
        if self.url is not None and _has_password(self.url.get_secret_value()):
            lines.append(
                "store.url carries a password, and settings files get copied, committed and pasted: put the URL in "
                'an environment variable and name it with store.url_env (e.g. url_env = "DATABASE_URL")'
            )
        url = self.connection_url()
        if url is None:
            if self.url_env:
                lines.append(
                    f"store.url_env names {self.url_env}, which is not set: export it with the {self.backend} URL"
                )
            else:
                lines.append(
                    f"backend = {self.backend!r} needs store.url_env (the name of an environment variable holding "
                    f"the URL) or store.url, e.g. {SCHEMES[self.backend][0]}://host/..."
                )
        elif (scheme := urlsplit(url).scheme.lower()) not in SCHEMES[self.backend]:
            source = f"the URL in {self.url_env}" if self.url_env else "store.url"
            wanted = " or ".join(f"{s}://" for s in SCHEMES[self.backend])
            lines.append(
                f"{source} starts with {scheme or '(no scheme)'}://, which is not a {self.backend} URL: use {wanted}"
            )
        return lines


def _has_password(url: str) -> bool:
    parts = urlsplit(url)
    try:
        password = parts.password
    except ValueError:
        password = None
    in_query = any(name.lower() == "password" for name, _ in parse_qsl(parts.query, keep_blank_values=True))
    return bool(password) or in_query
