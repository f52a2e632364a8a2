"""[worker]: the Arcade-compatible worker endpoints and their shared secret."""

from __future__ import annotations

import os

from pydantic import BaseModel, ConfigDict, Field

from .secret_strength import weakness


class WorkerSettings(BaseModel):
    """Arcade-compatible worker endpoints, on when a secret is configured."""

    model_config = ConfigDict(extra="forbid")

    secret_env: str | None = Field(None, description="Environment variable holding the shared worker secret.")
    max_token_seconds: int = Field(300, ge=10, le=86400, description="Longest lifetime a worker token may have.")
    allow_tokens_without_exp: bool = Field(
        False, description="Compatibility: accept tokens without exp, as Arcade's worker does (logs a warning)."
    )
    only: bool = Field(False, description="Serve only the worker API: no /mcp and no OAuth routes.")

    def secret(self) -> str | None:
        return os.environ.get(self.secret_env) if self.secret_env else None

    def secret_problem(self) -> str | None:
        """Why the configured secret cannot be used (unset, or too easy to guess), in one line; None if it can.
        `serve` and `bastion worker-token` both refuse with this line."""
        if not self.secret_env:
            return None
        return weakness(self.secret(), f"the worker secret in {self.secret_env} (named by worker.secret_env)")
