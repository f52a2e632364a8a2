"""[store]: where grants, tokens and clients are kept."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class StoreSettings(BaseModel):
    """The storage backend."""

    model_config = ConfigDict(extra="forbid")

    backend: Literal["sqlite", "memory"] = Field("sqlite", description="Where grants, tokens and clients live.")
    path: str = Field("bastion.db", description="The SQLite file.")
