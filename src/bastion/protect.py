"""bastion.protect: Bastion's front door before an MCP server written with anything that speaks ASGI."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import Settings

if TYPE_CHECKING:
    from .surface import Surface


def protect(app: Any, settings: Settings | None = None, **options: Any) -> Surface:
    """`app` (an ASGI MCP application: the official SDK's `streamable_http_app()`, FastMCP's `http_app()`, ...)
    behind Bastion's authorization server and/or external issuers, as `settings` (or bastion.toml and BASTION_*
    variables, then `options`, as `Settings.load` reads them) describe. Serve the result with any ASGI server.

    The application gets each caller in `scope["user"]` and `scope["auth"]` (Starlette's conventions) and
    `scope["bastion.principal"]`, never the bearer token. Refuses (SettingsError) what `bastion serve` refuses,
    and settings that would check no caller."""
    from .compose import build_protected

    return build_protected(app, settings if settings is not None else Settings.load(**options))
