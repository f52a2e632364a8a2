"""Loading settings: defaults, then the TOML file, then BASTION_* environment variables, then explicit overrides;
and describe(), the table of every setting that docs/configuration.md prints.

BASTION_SECTION__NAME sets [section] name; lists are comma-separated, tables name=value pairs, and lists of
tables ([[resource.issuers]]) JSON. An unknown variable or key is refused, never ignored.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar, get_args

from pydantic import BaseModel, ValidationError

from .errors import SettingsError

ENV_PREFIX = "BASTION_"
# Environment variables with the prefix that are not settings themselves.
NOT_SETTINGS = frozenset({"BASTION_CONFIG"})

Model = TypeVar("Model", bound=BaseModel)


def describe(model: type[BaseModel]) -> list[tuple[str, str, Any, str]]:
    """(dotted name, environment variable, default, description) for every setting, sections included."""
    rows: list[tuple[str, str, Any, str]] = []

    def walk(section: type[BaseModel], prefix: str) -> None:
        for name, field in section.model_fields.items():
            dotted = f"{prefix}{name}"
            if isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
                walk(field.annotation, f"{dotted}.")
                continue
            env = ENV_PREFIX + dotted.replace(".", "__").upper()
            rows.append((dotted, env, field.get_default(call_default_factory=True), field.description or ""))

    walk(model, "")
    return rows


def load(
    model: type[Model],
    config_file: str | Path | None,
    env: Mapping[str, str] | None,
    overrides: Mapping[str, Any],
) -> Model:
    """Defaults, then the TOML file, then BASTION_* variables, then explicit overrides (CLI flags; None skipped)."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "defaults"
    path = config_file or env.get("BASTION_CONFIG")
    if path is None and Path("bastion.toml").is_file():
        path = "bastion.toml"
    if path is not None:
        source = str(path)
        try:
            with open(path, "rb") as f:
                data.update(tomllib.load(f))
        except FileNotFoundError:
            raise SettingsError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{path} is not valid TOML: {exc}") from None
    unknown = []
    from_environment: dict[str, str] = {}
    for key, value in env.items():
        if not key.startswith(ENV_PREFIX) or key in NOT_SETTINGS:
            continue
        # BASTION_SECTION__NAME sets [section] name.
        names = key.removeprefix(ENV_PREFIX).lower().split("__")
        field = _field(model, names)
        if field is None:
            unknown.append(key)
            continue
        target = data
        for part in names[:-1]:
            target = target.setdefault(part, {})
        try:
            target[names[-1]] = _from_env(field, value)
        except ValueError as exc:
            raise SettingsError(f"{key} {exc}") from None
        from_environment[".".join(names)] = key
    if unknown:
        raise SettingsError(
            f"unknown setting(s) in the environment: {', '.join(sorted(unknown))}. "
            f"Known: {', '.join(env for _, env, _, _ in describe(model))}"
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    data.update(given)
    try:
        loaded = model.model_validate(data)
    except ValidationError as exc:
        raise SettingsError(_explain(model, exc, source)) from None
    if hasattr(loaded, "_from_environment"):
        loaded._from_environment = {k: v for k, v in from_environment.items() if k not in given}
    return loaded


def _field(model: type[BaseModel], path: list[str]) -> Any:
    section: Any = model
    field = None
    for part in path:
        if not (isinstance(section, type) and issubclass(section, BaseModel)) or part not in section.model_fields:
            return None
        field = section.model_fields[part]
        section = field.annotation
    if isinstance(section, type) and issubclass(section, BaseModel):
        return None  # a whole section cannot be set from one variable
    return field


def _from_env(field: Any, value: str) -> Any:
    items = get_args(field.annotation)
    if items and isinstance(items[0], type) and issubclass(items[0], BaseModel):
        # A list of tables ([[resource.issuers]]): JSON in a variable, for containers configured by environment.
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            raise ValueError('must be a JSON list of tables, e.g. [{"name": "corp", ...}]') from None
    annotation = str(field.annotation)
    if "dict" in annotation:  # name=value,name=value
        return dict(item.strip().split("=", 1) for item in value.split(",") if "=" in item)
    if "list" in annotation:
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _explain(model: type[BaseModel], exc: ValidationError, source: str) -> str:
    lines = [f"invalid settings (from {source} and BASTION_* variables):"]
    for error in exc.errors():
        where = ".".join(str(p) for p in error["loc"]) or "(top level)"
        if error["type"] == "extra_forbidden":
            lines.append(f"  {where}: not a setting; known settings are {', '.join(model.model_fields)}")
        else:
            field = model.model_fields.get(str(error["loc"][0])) if error["loc"] else None
            hint = f" ({field.description})" if field and field.description else ""
            lines.append(f"  {where}: {error['msg']}{hint}")
    return "\n".join(lines)
