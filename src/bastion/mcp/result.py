"""Turning what user functions return into MCP results: tool results, resource contents, prompt messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .content import CONTENT_TYPES, EmbeddedResource, to_blocks, to_text


@dataclass(slots=True)
class ToolResult:
    """Full control over a tool's answer: content blocks, structured content, error flag and _meta."""

    content: list[Any] = field(default_factory=list)
    structured: Any = None
    is_error: bool = False
    meta: dict[str, Any] | None = None

    def to_result(self) -> dict[str, Any]:
        result: dict[str, Any] = {"content": to_blocks(self.content) if self.content else []}
        if self.structured is not None:
            result["structuredContent"] = self.structured
        if self.is_error:
            result["isError"] = True
        if self.meta:
            result["_meta"] = self.meta
        return result


def error_result(message: str) -> dict[str, Any]:
    return {"content": [{"type": "text", "text": message}], "isError": True}


def resource_contents(uri: str, value: Any, mime_type: str | None) -> list[dict[str, Any]]:
    """`resources/read` contents for a value: text, bytes, an EmbeddedResource or a list of them."""
    if isinstance(value, EmbeddedResource):
        return [value.contents()]
    if isinstance(value, list) and value and all(isinstance(v, EmbeddedResource) for v in value):
        return [v.contents() for v in value]
    item: dict[str, Any] = {"uri": uri}
    if isinstance(value, bytes | bytearray):
        import base64

        item["mimeType"] = mime_type or "application/octet-stream"
        item["blob"] = base64.b64encode(value).decode("ascii")
    else:
        item["mimeType"] = mime_type or ("text/plain" if isinstance(value, str) else "application/json")
        item["text"] = to_text(value)
    return [item]


def prompt_messages(value: Any) -> list[dict[str, Any]]:
    """Prompt messages for a value: a string, a content object, a {role, content} dict, or a list of these."""
    items = value if isinstance(value, list | tuple) else [value]
    messages = []
    for item in items:
        if isinstance(item, dict) and "role" in item:
            content = item.get("content")
            if isinstance(content, CONTENT_TYPES):
                content = content.to_block()
            elif isinstance(content, str):
                content = {"type": "text", "text": content}
            messages.append({"role": item["role"], "content": content})
        elif isinstance(item, CONTENT_TYPES):
            messages.append({"role": "user", "content": item.to_block()})
        else:
            messages.append({"role": "user", "content": {"type": "text", "text": to_text(item)}})
    return messages
