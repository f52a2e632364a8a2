import enum
from typing import Annotated

import pytest
from pydantic import BaseModel, Field, ValidationError

from bastion import App, Context
from bastion.mcp.schema import inspect_tool, parse_docstring


class Color(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Address(BaseModel):
    street: str
    city: str = "Paris"


def test_schema_from_hints_docstring_and_annotated():
    def tool(
        name: str,
        count: int = 3,
        color: Color = Color.RED,
        tags: list[str] | None = None,
        extra: dict[str, int] | None = None,
        address: Address | None = None,
        note: Annotated[str, "A free note"] = "",
        level: Annotated[int, Field(ge=1, le=5, description="How loud")] = 1,
        ctx: Context | None = None,
    ) -> str:
        """Do the thing.

        Args:
            name: Who to greet,
                over two lines.
            count: How many times.
        """
        return name

    sig = inspect_tool(tool)
    schema = sig.input_schema
    assert sig.description == "Do the thing."
    assert sig.context_params == ("ctx",)
    assert schema["type"] == "object" and schema["required"] == ["name"]
    props = schema["properties"]
    assert "ctx" not in props
    assert props["name"] == {"type": "string", "description": "Who to greet, over two lines."}
    assert props["count"]["default"] == 3 and props["count"]["description"] == "How many times."
    assert props["note"]["description"] == "A free note"
    assert props["level"]["minimum"] == 1 and props["level"]["maximum"] == 5
    assert "$defs" in schema and {"Color", "Address"} <= set(schema["$defs"])
    assert schema["$defs"]["Color"]["enum"] == ["red", "blue"]
    assert props["extra"]["anyOf"][0]["additionalProperties"] == {"type": "integer"}
    assert sig.output_schema is None  # a plain string is text content only


def test_arguments_are_validated_and_coerced_to_the_declared_types():
    def tool(color: Color, address: Address, n: int = 1) -> str:
        return ""

    sig = inspect_tool(tool)
    kwargs = sig.validate({"color": "blue", "address": {"street": "Main"}})
    assert kwargs == {"color": Color.BLUE, "address": Address(street="Main"), "n": 1}
    with pytest.raises(ValidationError):
        sig.validate({"color": "green", "address": {"street": "Main"}})
    with pytest.raises(ValidationError):
        sig.validate({"color": "red"})


def test_output_schema_wraps_non_objects_and_keeps_models():
    def number() -> int:
        return 1

    def model() -> Address:
        return Address(street="x")

    wrapped = inspect_tool(number)
    assert wrapped.output_schema == {
        "type": "object",
        "properties": {"result": {"type": "integer"}},
        "required": ["result"],
    }
    assert wrapped.structured(4) == {"result": 4}
    direct = inspect_tool(model)
    assert direct.output_schema["properties"]["street"] == {"type": "string"}
    assert direct.structured(Address(street="x")) == {"street": "x", "city": "Paris"}


def test_signatures_clients_cannot_call_are_refused_at_registration():
    app = App("t")
    with pytest.raises(TypeError):

        @app.tool
        def star(*args: int) -> None: ...

    with pytest.raises(ValueError):

        @app.tool(name="bad name!")
        def named() -> None: ...

    with pytest.raises(ValueError):

        @app.tool(input_schema={"type": "array"})
        def wrong_schema() -> None: ...

    @app.tool
    def dup() -> None: ...

    with pytest.raises(ValueError):
        app.tool(dup)


def test_docstring_sections_other_than_args_are_not_parameters():
    doc = parse_docstring("""Summary line.

    More text.

    Args:
        a (int): first
        b: second

    Returns:
        c: not a parameter
    """)
    assert doc.summary == "Summary line.\n\nMore text."
    assert doc.params == {"a": "first", "b": "second"}


def test_resource_template_variables_must_match_parameters():
    app = App("t")
    with pytest.raises(ValueError):

        @app.resource("test://{id}/data")
        def wrong(other: str) -> str:
            return other

    @app.resource("test://{id}/data")
    def right(id: str) -> str:
        return id

    _template, values = app.registry.find_template("test://42/data")
    assert values == {"id": "42"}
    assert app.registry.find_template("test://42/data/extra") is None
    assert app.registry.find_template("test://a/b/data") is None


def test_content_lists_are_content_not_structured_data():
    from typing import Any

    from bastion import Image

    def blocks() -> list[Any]:
        return ["x", Image(b"png")]

    def images() -> list[Image]:
        return []

    def words() -> list[str]:
        return []

    assert inspect_tool(blocks).output_schema is None
    assert inspect_tool(images).output_schema is None
    assert inspect_tool(words).output_schema is not None
