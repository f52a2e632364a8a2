"""Derive a tool's input and output JSON Schema from its Python signature.

Arguments are validated by a pydantic model built from the parameters, so what the schema promises is what
the function receives. Return values with a non-object schema are wrapped as {"result": value}, because
structured content must be an object for the revisions before 2026-07-28.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, get_args, get_origin

import pydantic
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema

from .content import CONTENT_TYPES


class _Schema(GenerateJsonSchema):
    """pydantic's JSON Schema generator, without the noise of a title on every field."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


class _Args(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True, extra="ignore")


@dataclass(slots=True)
class ParsedDoc:
    summary: str
    params: dict[str, str]


_SECTION = re.compile(r"^\s*(Args|Arguments|Parameters|Params)\s*:\s*$", re.IGNORECASE)
_OTHER_SECTION = re.compile(r"^\s*(Returns?|Raises|Yields|Examples?|Notes?)\s*:\s*$", re.IGNORECASE)
_PARAM = re.compile(r"^\s*(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")


def parse_docstring(doc: str | None) -> ParsedDoc:
    """Split a Google-style docstring into its description and per-parameter descriptions."""
    if not doc:
        return ParsedDoc("", {})
    summary: list[str] = []
    params: dict[str, str] = {}
    section, current, param_indent = "summary", None, -1
    for line in inspect.cleandoc(doc).splitlines():
        if _SECTION.match(line):
            section, current, param_indent = "args", None, -1
        elif _OTHER_SECTION.match(line):
            section = "other"
        elif section == "summary":
            summary.append(line)
        elif section == "args" and line.strip():
            indent = len(line) - len(line.lstrip())
            match = _PARAM.match(line)
            if match and (param_indent < 0 or indent == param_indent):
                param_indent, current = indent, match.group(1)
                params[current] = match.group(2).strip()
            elif current:
                params[current] = f"{params[current]} {line.strip()}".strip()
    return ParsedDoc("\n".join(summary).strip(), params)


def _with_description(annotation: Any, description: str | None) -> Any:
    """Turn Annotated[T, "text"] into a pydantic Field description; add a docstring description."""
    if get_origin(annotation) is Annotated:
        base, *extras = get_args(annotation)
        kept = []
        for extra in extras:
            if isinstance(extra, str):
                description = extra
            else:
                kept.append(extra)
        annotation = Annotated[(base, *kept)] if kept else base
    if description:
        return Annotated[annotation, Field(description=description)]
    return annotation


@dataclass(slots=True)
class ToolSignature:
    args_model: type[BaseModel]
    context_params: tuple[str, ...]
    input_schema: dict[str, Any]
    output_schema: dict[str, Any] | None
    wrap_output: bool
    output_adapter: TypeAdapter[Any] | None
    description: str
    field_names: tuple[str, ...] = ()

    def validate(self, arguments: dict[str, Any]) -> dict[str, Any]:
        """Validated keyword arguments, or pydantic.ValidationError."""
        model = self.args_model.model_validate(arguments)
        return {name: getattr(model, name) for name in self.field_names}

    def structured(self, value: Any) -> Any:
        if self.output_adapter is None:
            return None
        data = self.output_adapter.dump_python(value, mode="json", by_alias=True)
        return {"result": data} if self.wrap_output else data


def _is_context(annotation: Any) -> bool:
    from .context import Context

    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_is_context(a) for a in get_args(annotation) if a is not type(None))
    return isinstance(annotation, type) and issubclass(annotation, Context)


def _no_structured_output(annotation: Any) -> bool:
    if annotation in (inspect.Signature.empty, None, type(None), str, Any):
        return True
    if isinstance(annotation, type) and issubclass(annotation, CONTENT_TYPES):
        return True
    origin = get_origin(annotation)
    if origin in (list, tuple):
        # A list of content blocks (or of Any, which may hold them) is content, not data.
        return any(a is Any or (_no_structured_output(a) and a is not str) for a in get_args(annotation))
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return any(_no_structured_output(a) for a in get_args(annotation) if a is not type(None)) and all(
            a is type(None) or _no_structured_output(a) for a in get_args(annotation)
        )
    return False


def _object_schema(schema: dict[str, Any]) -> bool:
    if schema.get("type") == "object":
        return True
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        target = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
        return bool(target.get("type") == "object")
    return False


class DefinitionError(TypeError):
    """A function that cannot be offered to clients as it is written; the message names it, and the parameter or
    return type at fault, and says what to change."""


DESCRIBABLE = "use str, int, float, bool, a list or dict of them, an Enum, a dataclass or a pydantic model"


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return f"{annotation.__module__}.{annotation.__qualname__}".removeprefix("builtins.")
    return repr(annotation).replace("typing.", "")


def _describe_each(name: str, fields: dict[str, Any]) -> None:
    """Find the field whose type JSON Schema cannot describe (after describing them all at once failed)."""
    for param, (annotation, _) in fields.items():
        try:
            TypeAdapter(annotation).json_schema(schema_generator=_Schema)
        except Exception:
            raise DefinitionError(
                f"tool {name!r}: parameter {param!r} has type {_type_name(annotation)}, which cannot be described "
                f"to clients as JSON Schema; {DESCRIBABLE}"
            ) from None


def inspect_tool(
    fn: Callable[..., Any], structured_output: bool | None = None, name: str | None = None
) -> ToolSignature:
    """Build the argument model and schemas for `fn`; DefinitionError (a TypeError) for signatures we cannot
    serve, naming the tool (`name`, the function's own by default) and what to change."""
    name = name or fn.__name__
    doc = parse_docstring(fn.__doc__)
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:  # an annotation naming something not imported (a string, or `from __future__`)
        raise DefinitionError(f"tool {name!r}: {exc} in its annotations; import it where the tool is defined") from None
    fields: dict[str, Any] = {}
    context_params: list[str] = []
    for param_name, param in inspect.signature(fn).parameters.items():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise DefinitionError(f"tool {name!r}: *args and **kwargs cannot be described to a client")
        annotation = hints.get(param_name, Any)
        if _is_context(annotation):
            context_params.append(param_name)
            continue
        if param_name.startswith("_"):
            raise DefinitionError(f"tool {name!r}: parameter {param_name!r} starts with '_', which clients cannot send")
        annotation = _with_description(annotation, doc.params.get(param_name))
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[param_name] = (annotation, default)
    try:
        model = pydantic.create_model(f"{fn.__name__}_arguments", __base__=_Args, **fields)
        input_schema = model.model_json_schema(schema_generator=_Schema)
    except Exception:
        _describe_each(name, fields)
        raise
    input_schema.pop("title", None)
    input_schema.setdefault("properties", {})

    returns = hints.get("return", inspect.Signature.empty)
    output_schema = None
    wrap = False
    adapter: TypeAdapter[Any] | None = None
    wanted = structured_output if structured_output is not None else not _no_structured_output(returns)
    if wanted and returns is not inspect.Signature.empty:
        try:
            adapter = TypeAdapter(returns)
            schema = adapter.json_schema(schema_generator=_Schema)
        except Exception:
            raise DefinitionError(
                f"tool {name!r}: its return type {_type_name(returns)} cannot be described to clients as JSON "
                f"Schema; {DESCRIBABLE}, or pass structured_output=False"
            ) from None
        if _object_schema(schema):
            output_schema = schema
        else:
            wrap = True
            defs = schema.pop("$defs", None)
            output_schema = {"type": "object", "properties": {"result": schema}, "required": ["result"]}
            if defs:
                output_schema["$defs"] = defs
        output_schema.pop("title", None)
    return ToolSignature(
        model, tuple(context_params), input_schema, output_schema, wrap, adapter, doc.summary, tuple(model.model_fields)
    )


def context_params(fn: Callable[..., Any]) -> tuple[str, ...]:
    """Names of the parameters through which `fn` asks for the request Context."""
    hints = typing.get_type_hints(fn, include_extras=True)
    return tuple(name for name in inspect.signature(fn).parameters if _is_context(hints.get(name)))
