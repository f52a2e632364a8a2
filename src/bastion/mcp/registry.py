"""What an App serves: tools, resources, resource templates and prompts, registered by decorators."""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .headers import header_params, validate_annotations
from .schema import ToolSignature, inspect_tool, parse_docstring

Handler = Callable[..., Any]

# MCP 2025-11-25 tool names: 1-128 characters from this set.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


@dataclass(frozen=True, slots=True)
class Tool:
    """A tool as registered. Frozen: tools/list caches definitions per Tool object, so a tool changes only by
    being replaced with a new one."""

    name: str
    fn: Handler
    signature: ToolSignature
    title: str | None = None
    description: str = ""
    annotations: dict[str, Any] | None = None
    requires_secrets: tuple[str, ...] = ()
    requires_upstream: str | None = None  # an identity provider whose token the tool calls APIs with
    upstream_scopes: tuple[str, ...] = ()  # scopes that token must carry
    task_support: str | None = None  # "optional" or "required": may run as a task (the tasks extension)
    input_schema: dict[str, Any] | None = None  # an explicit schema overrides the derived one
    meta: dict[str, Any] | None = None
    icons: list[dict[str, Any]] | None = None
    # Arguments that 2026-07-28 clients mirror into Mcp-Param-* headers: (path, header, JSON type).
    header_params: list[tuple[tuple[str, ...], str, str]] = field(default_factory=list)
    scopes: tuple[str, ...] = ()  # every one needed to see and use it (with authentication on)

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)

    def definition(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "inputSchema": self.input_schema or self.signature.input_schema,
        }
        if self.title:
            d["title"] = self.title
        if self.signature.output_schema is not None:
            d["outputSchema"] = self.signature.output_schema
        if self.annotations:
            d["annotations"] = self.annotations
        if self.icons:
            d["icons"] = self.icons
        if self.meta:
            d["_meta"] = self.meta
        if self.task_support:
            d["execution"] = {"taskSupport": self.task_support}
        return d


@dataclass(slots=True)
class Resource:
    uri: str
    name: str
    fn: Handler
    description: str = ""
    mime_type: str | None = None
    title: str | None = None
    context_params: tuple[str, ...] = ()
    annotations: dict[str, Any] | None = None
    scopes: tuple[str, ...] = ()  # every one needed to see and use it (with authentication on)

    def definition(self) -> dict[str, Any]:
        d: dict[str, Any] = {"uri": self.uri, "name": self.name}
        if self.title:
            d["title"] = self.title
        if self.description:
            d["description"] = self.description
        if self.mime_type:
            d["mimeType"] = self.mime_type
        if self.annotations:
            d["annotations"] = self.annotations
        return d


_TEMPLATE_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(slots=True)
class ResourceTemplate:
    uri_template: str
    name: str
    fn: Handler
    description: str = ""
    mime_type: str | None = None
    title: str | None = None
    context_params: tuple[str, ...] = ()
    pattern: re.Pattern[str] = field(init=False)
    scopes: tuple[str, ...] = ()  # every one needed to see and use it (with authentication on)

    def __post_init__(self) -> None:
        # Level-1 RFC 6570 templates: each {var} matches one path segment's worth of characters.
        parts = _TEMPLATE_VAR.split(self.uri_template)
        regex = "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/?#]+)" for i, p in enumerate(parts))
        self.pattern = re.compile(f"^{regex}$")

    @property
    def variables(self) -> list[str]:
        return _TEMPLATE_VAR.findall(self.uri_template)

    def match(self, uri: str) -> dict[str, str] | None:
        m = self.pattern.match(uri)
        return m.groupdict() if m else None

    def definition(self) -> dict[str, Any]:
        d: dict[str, Any] = {"uriTemplate": self.uri_template, "name": self.name}
        if self.title:
            d["title"] = self.title
        if self.description:
            d["description"] = self.description
        if self.mime_type:
            d["mimeType"] = self.mime_type
        return d


@dataclass(slots=True)
class PromptArgument:
    name: str
    description: str = ""
    required: bool = True


@dataclass(slots=True)
class Prompt:
    name: str
    fn: Handler
    arguments: list[PromptArgument]
    description: str = ""
    title: str | None = None
    context_params: tuple[str, ...] = ()
    scopes: tuple[str, ...] = ()  # every one needed to see and use it (with authentication on)

    def definition(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name}
        if self.title:
            d["title"] = self.title
        if self.description:
            d["description"] = self.description
        if self.arguments:
            d["arguments"] = [
                {"name": a.name, "description": a.description, "required": a.required} for a in self.arguments
            ]
        return d


# fn(value typed so far, other arguments already chosen) -> suggestions
Completer = Callable[[str, dict[str, str]], Awaitable[Iterable[str]] | Iterable[str]]


class Registry:
    """Everything an App offers, in registration order (tools/list is deterministic)."""

    def __init__(self) -> None:
        self.tools: dict[str, Tool] = {}
        self.resources: dict[str, Resource] = {}
        self.templates: dict[str, ResourceTemplate] = {}
        self.prompts: dict[str, Prompt] = {}
        # (reference type, prompt name or template URI, argument name) -> completer
        self.completers: dict[tuple[str, str, str], Completer] = {}

    def add_tool(
        self,
        fn: Handler,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        annotations: dict[str, Any] | None = None,
        requires_secrets: list[str] | tuple[str, ...] = (),
        requires_upstream: str | None = None,
        upstream_scopes: list[str] | tuple[str, ...] = (),
        scopes: list[str] | tuple[str, ...] = (),
        input_schema: dict[str, Any] | None = None,
        structured_output: bool | None = None,
        meta: dict[str, Any] | None = None,
        icons: list[dict[str, Any]] | None = None,
        task_support: str | None = None,
    ) -> Tool:
        tool_name = name or fn.__name__
        if task_support not in (None, "optional", "required"):
            raise ValueError(f"tool {tool_name!r}: task_support is 'optional' or 'required' (or None)")
        if not _TOOL_NAME.match(tool_name):
            raise ValueError(f"tool name {tool_name!r}: use 1-128 letters, digits, '_', '-' or '.'")
        if tool_name in self.tools:
            raise ValueError(f"a tool named {tool_name!r} is already registered")
        if input_schema is not None and input_schema.get("type") != "object":
            raise ValueError(f"tool {tool_name!r}: an explicit input_schema must have type 'object'")
        signature = inspect_tool(fn, structured_output, tool_name)
        schema = input_schema or signature.input_schema
        validate_annotations(schema)
        tool = Tool(
            name=tool_name,
            fn=fn,
            signature=signature,
            title=title,
            description=description if description is not None else signature.description,
            annotations=annotations,
            requires_secrets=tuple(requires_secrets),
            requires_upstream=requires_upstream,
            upstream_scopes=tuple(upstream_scopes),
            task_support=task_support,
            scopes=tuple(scopes),
            input_schema=input_schema,
            meta=meta,
            icons=icons,
            header_params=header_params(schema),
        )
        self.tools[tool_name] = tool
        return tool

    def add_resource(
        self,
        fn: Handler,
        uri: str,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        mime_type: str | None = None,
        scopes: list[str] | tuple[str, ...] = (),
    ) -> Resource | ResourceTemplate:
        from .schema import context_params

        ctx_params = context_params(fn)
        common = (
            name or fn.__name__,
            fn,
            description if description is not None else parse_docstring(fn.__doc__).summary,
            mime_type,
            title,
            ctx_params,
        )
        if _TEMPLATE_VAR.search(uri):
            template = ResourceTemplate(uri, *common, scopes=tuple(scopes))
            params = set(inspect.signature(fn).parameters) - set(ctx_params)
            if set(template.variables) != params:
                raise ValueError(
                    f"resource template {uri!r}: variables {sorted(template.variables)} must match the "
                    f"function's parameters {sorted(params)}"
                )
            if uri in self.templates:
                raise ValueError(f"a resource template {uri!r} is already registered")
            self.templates[uri] = template
            return template
        if uri in self.resources:
            raise ValueError(f"a resource {uri!r} is already registered")
        resource = Resource(uri, *common, scopes=tuple(scopes))
        self.resources[uri] = resource
        return resource

    def add_prompt(
        self,
        fn: Handler,
        *,
        name: str | None = None,
        title: str | None = None,
        description: str | None = None,
        scopes: list[str] | tuple[str, ...] = (),
    ) -> Prompt:
        from .schema import context_params

        prompt_name = name or fn.__name__
        if prompt_name in self.prompts:
            raise ValueError(f"a prompt named {prompt_name!r} is already registered")
        doc = parse_docstring(fn.__doc__)
        ctx_params = context_params(fn)
        arguments = [
            PromptArgument(p.name, doc.params.get(p.name, ""), p.default is inspect.Parameter.empty)
            for p in inspect.signature(fn).parameters.values()
            if p.name not in ctx_params
        ]
        prompt = Prompt(
            prompt_name,
            fn,
            arguments,
            description if description is not None else doc.summary,
            title,
            ctx_params,
            scopes=tuple(scopes),
        )
        self.prompts[prompt_name] = prompt
        return prompt

    def find_template(self, uri: str) -> tuple[ResourceTemplate, dict[str, str]] | None:
        for template in self.templates.values():
            values = template.match(uri)
            if values is not None:
                return template, values
        return None
