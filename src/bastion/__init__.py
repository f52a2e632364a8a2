"""Bastion: secure hosting for MCP servers.

from bastion import App, Context

app = App("notes")

@app.tool
async def add_note(text: str, ctx: Context) -> str:
    \"\"\"Store a note and return its id.\"\"\"
"""

from .app import App
from .mcp.content import Audio, EmbeddedResource, Image, ResourceLink, Text
from .mcp.context import Context, ElicitationResult, ToolError
from .mcp.errors import McpError
from .mcp.middleware import Call, Denied, Proceed, RateLimited
from .mcp.result import ToolResult
from .protect import protect
from .settings import Settings, SettingsError

__all__ = [
    "App",
    "Audio",
    "Call",
    "Context",
    "Denied",
    "ElicitationResult",
    "EmbeddedResource",
    "Image",
    "McpError",
    "Proceed",
    "RateLimited",
    "ResourceLink",
    "Settings",
    "SettingsError",
    "Text",
    "ToolError",
    "ToolResult",
    "protect",
]
__version__ = "0.1.0"
