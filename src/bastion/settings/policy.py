"""[policy]: scopes needed to see and use tools, resources and prompts, by glob."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class PolicySettings(BaseModel):
    """Scopes needed to see and use things, by glob, on top of each function's own `scopes=[...]`."""

    model_config = ConfigDict(extra="forbid")

    tools: dict[str, list[str]] = Field(
        default_factory=dict, description='Tool name globs to scopes, e.g. {"delete_*" = ["notes:admin"]}.'
    )
    resources: dict[str, list[str]] = Field(default_factory=dict, description="Resource URI globs to scopes.")
    prompts: dict[str, list[str]] = Field(default_factory=dict, description="Prompt name globs to scopes.")
