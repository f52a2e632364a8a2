"""Every server feature MCP defines, written with Bastion's public API.

The official MCP conformance suite runs against this server (see tests/e2e/test_conformance.py), and it is a
tour of the API: content types, logging, progress, sampling, elicitation, resources, templates, prompts and
completion.

    bastion serve examples/everything.py          # Streamable HTTP on http://127.0.0.1:8000/mcp
    python examples/everything.py                 # stdio
"""

import asyncio
import base64
import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from bastion import App, Audio, Context, EmbeddedResource, Image, McpError, ToolError

app = App("bastion-everything", "1.0.0", instructions="A server exercising every MCP feature.")

RED_PIXEL_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg=="
)
SILENT_WAV = base64.b64decode("UklGRiYAAABXQVZFZm10IBAAAAABAAEAQB8AAAB9AAACABAAZGF0YQIAAAA=")


# --- tools: content types -----------------------------------------------------------------------------
@app.tool
def test_simple_text() -> str:
    """Returns a simple text response."""
    return "This is a simple text response for testing."


@app.tool
def test_image_content() -> Image:
    """Returns a small PNG image."""
    return Image(RED_PIXEL_PNG, "image/png")


@app.tool
def test_audio_content() -> Audio:
    """Returns a short WAV clip."""
    return Audio(SILENT_WAV, "audio/wav")


@app.tool
def test_embedded_resource() -> EmbeddedResource:
    """Returns a resource embedded in the result."""
    return EmbeddedResource(
        "test://embedded-resource", text="This is an embedded resource content.", mime_type="text/plain"
    )


@app.tool
def test_multiple_content_types() -> list[Any]:
    """Returns text, an image and an embedded resource together."""
    return [
        "Multiple content types test:",
        Image(RED_PIXEL_PNG, "image/png"),
        EmbeddedResource(
            "test://mixed-content-resource",
            text=json.dumps({"test": "data", "value": 123}),
            mime_type="application/json",
        ),
    ]


@app.tool
def test_error_handling() -> str:
    """Always fails, to show how a tool reports an error."""
    raise ToolError("This tool intentionally returns an error for testing")


# --- tools: talking to the client during a call -----------------------------------------------------------
@app.tool
async def test_tool_with_logging(ctx: Context) -> str:
    """Sends log messages while it runs."""
    await ctx.info("Tool execution started")
    await asyncio.sleep(0.05)
    await ctx.info("Tool processing data")
    await asyncio.sleep(0.05)
    await ctx.info("Tool execution completed")
    return "Tool with logging executed successfully"


@app.tool
async def test_tool_with_progress(ctx: Context) -> str:
    """Reports progress from 0 to 100."""
    for done in (0, 50, 100):
        await ctx.progress(done, 100)
        if done < 100:
            await asyncio.sleep(0.05)
    return "Progress test completed"


@app.tool
async def test_sampling(prompt: str, ctx: Context) -> str:
    """Asks the client's language model to answer a prompt.

    Args:
        prompt: The prompt to send to the model.
    """
    result = await ctx.sample(prompt, max_tokens=100)
    content = result["content"]
    text = content.get("text", "") if isinstance(content, dict) else ""
    return f"LLM response: {text}"


ELICITATION_FORM = {
    "type": "object",
    "properties": {
        "username": {"type": "string", "description": "User's response"},
        "email": {"type": "string", "description": "User's email address"},
    },
    "required": ["username", "email"],
}


@app.tool
async def test_elicitation(message: str, ctx: Context) -> str:
    """Asks the user to fill in a form.

    Args:
        message: The message shown to the user.
    """
    answer = await ctx.elicit(message, ELICITATION_FORM)
    return f"User response: action={answer.action}, content={json.dumps(answer.data)}"


class Profile(BaseModel):
    """A form whose fields all have defaults (SEP-1034)."""

    name: str = Field("John Doe", description="User name")
    age: int = Field(30, description="User age")
    score: float = Field(95.5, description="User score")
    status: Literal["active", "inactive", "pending"] = Field("active", description="User status")
    verified: bool = Field(True, description="Verification status")


@app.tool
async def test_elicitation_sep1034_defaults(ctx: Context) -> str:
    """Asks for a form whose fields carry default values."""
    answer = await ctx.elicit("Please review your profile", Profile)
    content = answer.data.model_dump() if answer.data else None
    return f"Elicitation completed: action={answer.action}, content={json.dumps(content)}"


ENUM_FORM = {
    "type": "object",
    "properties": {
        "untitledSingle": {"type": "string", "description": "Pick one", "enum": ["option1", "option2", "option3"]},
        "titledSingle": {
            "type": "string",
            "description": "Pick one (titled)",
            "oneOf": [
                {"const": "value1", "title": "First Option"},
                {"const": "value2", "title": "Second Option"},
                {"const": "value3", "title": "Third Option"},
            ],
        },
        "legacyEnum": {
            "type": "string",
            "description": "Pick one (legacy titles)",
            "enum": ["opt1", "opt2", "opt3"],
            "enumNames": ["Option One", "Option Two", "Option Three"],
        },
        "untitledMulti": {
            "type": "array",
            "description": "Pick several",
            "minItems": 1,
            "maxItems": 3,
            "items": {"type": "string", "enum": ["option1", "option2", "option3"]},
        },
        "titledMulti": {
            "type": "array",
            "description": "Pick several (titled)",
            "minItems": 1,
            "maxItems": 3,
            "items": {
                "anyOf": [
                    {"const": "value1", "title": "First Choice"},
                    {"const": "value2", "title": "Second Choice"},
                    {"const": "value3", "title": "Third Choice"},
                ]
            },
        },
    },
    "required": [],
}


@app.tool
async def test_elicitation_sep1330_enums(ctx: Context) -> str:
    """Asks for single and multiple choices, titled and untitled (SEP-1330)."""
    answer = await ctx.elicit("Please make your choices", ENUM_FORM)
    return f"Elicitation completed: action={answer.action}, content={json.dumps(answer.data)}"


JSON_SCHEMA_2020_12 = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "type": "object",
    "$defs": {
        "address": {
            "$anchor": "addressDef",
            "type": "object",
            "properties": {"street": {"type": "string"}, "city": {"type": "string"}},
        }
    },
    "properties": {
        "name": {"type": "string"},
        "address": {"$ref": "#/$defs/address"},
        "contactMethod": {"type": "string", "enum": ["phone", "email"]},
        "phone": {"type": "string"},
        "email": {"type": "string"},
    },
    "allOf": [{"anyOf": [{"required": ["phone"]}, {"required": ["email"]}]}],
    "if": {"properties": {"contactMethod": {"const": "phone"}}, "required": ["contactMethod"]},
    "then": {"required": ["phone"]},
    "else": {"required": ["email"]},
    "additionalProperties": False,
}


@app.tool(input_schema=JSON_SCHEMA_2020_12)
def json_schema_2020_12_tool(
    name: str | None = None,
    address: dict[str, str] | None = None,
    contactMethod: str | None = None,
    phone: str | None = None,
    email: str | None = None,
) -> str:
    """Tool with JSON Schema 2020-12 features."""
    return f"name={name}, address={json.dumps(address)}, contact={contactMethod}: {phone or email}"


HEADER_PARAMS = {
    "type": "object",
    "properties": {
        "region": {"type": "string", "description": "Where to run", "x-mcp-header": "Region"},
        "limit": {"type": "integer", "description": "How many", "x-mcp-header": "Limit"},
        "query": {"type": "string", "description": "What to run"},
    },
    "required": ["region"],
}


@app.tool(input_schema=HEADER_PARAMS)
def test_header_params(region: str, limit: int = 10, query: str = "") -> str:
    """Arguments that 2026-07-28 clients mirror into Mcp-Param-* headers, checked against the body."""
    return f"region={region} limit={limit} query={query}"


@app.tool
async def test_reconnection(ctx: Context) -> str:
    """Ends its response stream mid-call; the client reconnects to collect the result."""
    await asyncio.sleep(0.05)
    await ctx.close_stream()
    await asyncio.sleep(0.1)
    return "Reconnection test completed successfully"


# --- questions to the client as multi-round-trip requests (2026-07-28; mid-call on 2025 sessions) ---------------
class UserName(BaseModel):
    name: str


class Confirm(BaseModel):
    ok: bool


class Color(BaseModel):
    color: str


class PromptContext(BaseModel):
    context: str


def _said(answer: dict[str, Any]) -> str:
    content = answer.get("content")
    return str(content.get("text", "")) if isinstance(content, dict) else ""


@app.tool
async def test_input_required_result_elicitation(ctx: Context) -> str:
    """Asks the user's name (input request user_name), then greets them."""
    answer = await ctx.elicit("What is your name?", UserName, key="user_name")
    return f"Hello, {answer.data.name}!" if answer.action == "accept" else f"No name given ({answer.action})"


@app.tool
async def test_input_required_result_sampling(ctx: Context) -> str:
    """Asks the client's model a question (input request capital_question)."""
    answer = await ctx.sample("What is the capital of France?", max_tokens=100, key="capital_question")
    return f"The model said: {_said(answer)}"


@app.tool
async def test_input_required_result_list_roots(ctx: Context) -> str:
    """Asks the client for its roots (input request client_roots)."""
    roots = await ctx.list_roots(key="client_roots")
    return "Roots: " + ", ".join(str(root.get("uri")) for root in roots)


@app.tool
async def test_input_required_result_request_state(ctx: Context) -> str:
    """Asks for a confirmation; the answer comes back with the request state it was asked under."""
    answer = await ctx.elicit("Please confirm", Confirm, key="confirm")
    # Reaching here on 2026-07-28 means the engine checked the request state's seal before reading the answer.
    return f"state-ok: confirmed={answer.data.ok if answer.action == 'accept' else False}"


@app.tool
async def test_input_required_result_multiple_inputs(ctx: Context) -> str:
    """Asks for a name, a greeting from the model and the roots, all in one round."""
    name, greeting, roots = await ctx.gather(
        ctx.elicit("What is your name?", UserName, key="user_name"),
        ctx.sample("Generate a greeting", max_tokens=50, key="greeting"),
        ctx.list_roots(key="client_roots"),
    )
    who = name.data.name if name.action == "accept" else "someone"
    return f"{_said(greeting)} {who} ({len(roots)} roots)"


@app.tool
async def test_input_required_result_multi_round(ctx: Context) -> str:
    """Asks a name, then (in a second round) a favourite colour."""
    first = await ctx.elicit("Step 1: What is your name?", UserName, key="step1")
    second = await ctx.elicit("Step 2: What is your favorite color?", Color, key="step2")
    name = first.data.name if first.action == "accept" else "?"
    color = second.data.color if second.action == "accept" else "?"
    return f"{name} likes {color}"


@app.tool
async def test_input_required_result_tampered_state(ctx: Context) -> str:
    """Asks a confirmation under a sealed request state: a changed state is refused (-32602)."""
    answer = await ctx.elicit("Please confirm", Confirm, key="confirm")
    return f"confirmed={answer.data.ok if answer.action == 'accept' else False}"


@app.tool
async def test_input_required_result_capabilities(ctx: Context) -> str:
    """Asks only what the client declared it can answer: its model if it samples, the user if it elicits."""
    questions = []
    if ctx.supports("sampling"):
        questions.append(ctx.sample("Say hello", max_tokens=20, key="hello"))
    if ctx.supports("elicitation", "form"):
        questions.append(ctx.elicit("What is your name?", UserName, key="user_name"))
    if not questions:
        return "The client declared neither sampling nor elicitation: nothing to ask."
    await ctx.gather(*questions)
    return "Asked only what the client can answer."


@app.prompt
async def test_input_required_result_prompt(ctx: Context) -> str:
    """A prompt that asks the user for context first (input request user_context)."""
    answer = await ctx.elicit("What context should the prompt use?", PromptContext, key="user_context")
    context = answer.data.context if answer.action == "accept" else "none given"
    return f"Write about this, in this context: {context}"


@app.tool
async def test_missing_capability(ctx: Context) -> str:
    """Needs the client's model: a client that did not declare sampling is refused (-32021)."""
    answer = await ctx.sample("Say hello", max_tokens=20)
    return _said(answer)


@app.tool
async def test_streaming_elicitation(ctx: Context) -> str:
    """Asks the user mid-call: on 2026-07-28 the answer stream carries an input_required result, never a request."""
    answer = await ctx.elicit("What is your name?", UserName, key="user_name")
    return f"Hello, {answer.data.name}!" if answer.action == "accept" else "No name"


@app.tool
async def test_logging_tool(ctx: Context) -> str:
    """Logs at info: sent only to a client that asked for log messages (2026-07-28: _meta logLevel)."""
    await ctx.info("a log message from test_logging_tool")
    return "logged"


def _toggled_tool() -> str:
    """A tool that comes and goes (test_trigger_tool_change)."""
    return "here for now"


def _toggled_prompt() -> str:
    """A prompt that comes and goes (test_trigger_prompt_change)."""
    return "here for now"


@app.tool
def test_trigger_tool_change() -> str:
    """Adds or removes a tool, so that listeners hear the tool list changed."""
    if "test_toggled_tool" in app.registry.tools:
        app.remove_tool("test_toggled_tool")
        return "removed test_toggled_tool"
    app.tool(name="test_toggled_tool")(_toggled_tool)
    return "added test_toggled_tool"


@app.tool
def test_trigger_prompt_change() -> str:
    """Adds or removes a prompt, so that listeners hear the prompt list changed."""
    if "test_toggled_prompt" in app.registry.prompts:
        app.remove_prompt("test_toggled_prompt")
        return "removed test_toggled_prompt"
    app.prompt(name="test_toggled_prompt")(_toggled_prompt)
    return "added test_toggled_prompt"


# --- the tasks extension (2026-07-28): long calls become tasks their client polls -------------------------
@app.tool
def greet(name: str) -> str:
    """Answers at once: never a task."""
    return f"Hello, {name}!"


@app.tool(task_support="optional")
async def slow_compute(seconds: float = 1.0, label: str = "") -> str:
    """Works for `seconds` (0: at once, so an ordinary answer); a task when it takes longer."""
    await asyncio.sleep(max(0.0, min(seconds, 60.0)))
    return f"computed {label or 'it'} in {seconds:g} s"


@app.tool(task_support="required")
async def failing_job() -> str:
    """Runs only as a task, and reports a tool error after a second."""
    await asyncio.sleep(1.0)
    raise ToolError("the job failed")


@app.tool(task_support="optional")
async def protocol_error_job() -> str:
    """Fails with a protocol error (not a tool error): its task ends failed."""
    await asyncio.sleep(0.3)
    raise McpError(-32603, "the job broke")


class DeleteConfirmation(BaseModel):
    confirm: bool


@app.tool(task_support="optional")
async def confirm_delete(ctx: Context) -> str:
    """Works a little, then asks the user to confirm: the task waits in input_required for the answer."""
    await asyncio.sleep(0.3)
    answer = await ctx.elicit("Delete it?", DeleteConfirmation, key="confirm_delete")
    deleted = answer.action == "accept" and answer.data.confirm
    return "deleted" if deleted else "kept"


@app.tool(task_support="optional")
async def multi_input(ctx: Context) -> str:
    """Works a little, then asks two questions at once (answered one at a time, or together)."""
    await asyncio.sleep(0.3)
    first, second = await ctx.gather(
        ctx.elicit("First name?", UserName, key="first"), ctx.elicit("Second name?", UserName, key="second")
    )
    return f"{first.data.name} and {second.data.name}"


@app.tool(task_support="required")
async def test_tool_with_task(ctx: Context) -> str:
    """Asks the user's name first (an ordinary input_required round), then works on as a task."""
    answer = await ctx.elicit("What is your name?", UserName, key="user_name")
    await asyncio.sleep(0.5)
    return f"Task done for {answer.data.name if answer.action == 'accept' else 'nobody'}"


# --- resources ------------------------------------------------------------------------------------------
@app.resource("test://static-text", mime_type="text/plain")
def static_text() -> str:
    """A fixed text resource."""
    return "This is the content of the static text resource."


@app.resource("test://static-binary", mime_type="image/png")
def static_binary() -> bytes:
    """A fixed binary resource (a PNG image)."""
    return RED_PIXEL_PNG


watched = {"version": 1}


@app.resource("test://watched-resource", mime_type="text/plain")
def watched_resource() -> str:
    """A resource clients can subscribe to; test_update_watched_resource changes it."""
    return f"Watched resource, version {watched['version']}"


@app.tool
async def test_update_watched_resource() -> str:
    """Changes test://watched-resource and notifies its subscribers."""
    watched["version"] += 1
    await app.notify_resource_updated("test://watched-resource")
    return f"version {watched['version']}"


@app.resource("test://template/{id}/data", mime_type="application/json")
def template_data(id: str) -> dict[str, Any]:
    """Data for any id."""
    return {"id": id, "templateTest": True, "data": f"Data for ID: {id}"}


# --- prompts --------------------------------------------------------------------------------------------
@app.prompt
def test_simple_prompt() -> str:
    """A prompt without arguments."""
    return "This is a simple prompt for testing."


@app.prompt
def test_prompt_with_arguments(arg1: str, arg2: str) -> str:
    """A prompt with two arguments.

    Args:
        arg1: First test argument
        arg2: Second test argument
    """
    return f"Prompt with arguments: arg1='{arg1}', arg2='{arg2}'"


@app.prompt
def test_prompt_with_embedded_resource(resourceUri: str) -> list[Any]:
    """A prompt that embeds a resource.

    Args:
        resourceUri: URI of the resource to embed
    """
    return [
        EmbeddedResource(resourceUri, text="Embedded resource content for testing.", mime_type="text/plain"),
        "Please process the embedded resource above.",
    ]


@app.prompt
def test_prompt_with_image() -> list[Any]:
    """A prompt that includes an image."""
    return [Image(RED_PIXEL_PNG, "image/png"), "Please analyze the image above."]


@app.completion(prompt="test_prompt_with_arguments", argument="arg1")
def complete_arg1(value: str, context: dict[str, str]) -> list[str]:
    return [v for v in ("paris", "park", "parade", "testValue1") if v.startswith(value)]


if __name__ == "__main__":
    app.run()
