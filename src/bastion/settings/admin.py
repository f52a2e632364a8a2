"""[admin]: who may use the admin pages and API, and how long a browser stays signed in to them."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator


class AdminSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    subjects: list[str] = Field(
        default_factory=list,
        description='Subjects who may use /admin and its API, e.g. ["github:12345", "corp:ada"] (bastion admin '
        "grants list shows them). Nobody by default.",
    )
    session_hours: float = Field(
        8, gt=0, le=720, description="How long a browser stays signed in to the account and admin pages."
    )

    @field_validator("subjects")
    @classmethod
    def _subjects(cls, value: list[str]) -> list[str]:
        for subject in value:
            method, colon, user = subject.partition(":")
            if not colon or not method or not user or subject != subject.strip():
                raise ValueError(
                    f"{subject!r} is not a subject: subjects are <sign-in method>:<user>, e.g. github:12345 or "
                    "dev:ada (bastion admin grants list shows them)"
                )
        return value
