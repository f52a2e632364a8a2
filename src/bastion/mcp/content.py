"""Content blocks a tool, resource or prompt can return, and the conversion of plain values to them."""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

import orjson
import pydantic


def _b64(data: bytes | str) -> str:
    return data if isinstance(data, str) else base64.b64encode(data).decode("ascii")


@dataclass(slots=True)
class Text:
    text: str

    def to_block(self) -> dict[str, Any]:
        return {"type": "text", "text": self.text}


@dataclass(slots=True)
class Image:
    """An image; `data` is raw bytes (or an already base64-encoded string)."""

    data: bytes | str
    mime_type: str = "image/png"

    def to_block(self) -> dict[str, Any]:
        return {"type": "image", "data": _b64(self.data), "mimeType": self.mime_type}


@dataclass(slots=True)
class Audio:
    data: bytes | str
    mime_type: str = "audio/wav"

    def to_block(self) -> dict[str, Any]:
        return {"type": "audio", "data": _b64(self.data), "mimeType": self.mime_type}


@dataclass(slots=True)
class EmbeddedResource:
    """A resource's contents inlined in a result: give `text` or `blob` (bytes)."""

    uri: str
    text: str | None = None
    blob: bytes | None = None
    mime_type: str | None = None

    def contents(self) -> dict[str, Any]:
        item: dict[str, Any] = {"uri": self.uri}
        if self.mime_type:
            item["mimeType"] = self.mime_type
        if self.blob is not None:
            item["blob"] = _b64(self.blob)
        else:
            item["text"] = self.text or ""
        return item

    def to_block(self) -> dict[str, Any]:
        return {"type": "resource", "resource": self.contents()}


@dataclass(slots=True)
class ResourceLink:
    uri: str
    name: str
    description: str | None = None
    mime_type: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_block(self) -> dict[str, Any]:
        block: dict[str, Any] = {"type": "resource_link", "uri": self.uri, "name": self.name, **self.extra}
        if self.description:
            block["description"] = self.description
        if self.mime_type:
            block["mimeType"] = self.mime_type
        return block


Content = Text | Image | Audio | EmbeddedResource | ResourceLink
CONTENT_TYPES = (Text, Image, Audio, EmbeddedResource, ResourceLink)


def to_jsonable(value: Any) -> Any:
    """A plain JSON value for anything pydantic can serialise (models, dataclasses, enums, dates)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, pydantic.BaseModel):
        return value.model_dump(mode="json", by_alias=True, exclude_none=True)
    return pydantic.TypeAdapter(type(value)).dump_python(value, mode="json")


def to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return orjson.dumps(to_jsonable(value)).decode()


def to_blocks(value: Any) -> list[dict[str, Any]]:
    """Content blocks for a return value: content objects pass through, anything else becomes text."""
    if value is None:
        return []
    if isinstance(value, CONTENT_TYPES):
        return [value.to_block()]
    if isinstance(value, list | tuple) and any(isinstance(v, CONTENT_TYPES) for v in value):
        # A list with content objects is a list of blocks; plain items in it become text blocks.
        return [v.to_block() if isinstance(v, CONTENT_TYPES) else {"type": "text", "text": to_text(v)} for v in value]
    return [{"type": "text", "text": to_text(value)}]
