"""Protected resource metadata (RFC 9728): which authorization servers issue tokens for /mcp."""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..public_url import base_path, base_url

WELL_KNOWN = "/.well-known/oauth-protected-resource"


def routes(
    public_url: str | None, resource_path: str, issuers: Callable[[str], list[str]], scopes: list[str]
) -> list[BaseRoute]:
    async def serve(request: Request) -> Response:
        base = base_url(request.scope, public_url)
        return JSONResponse(
            {
                "resource": base + resource_path,
                "authorization_servers": issuers(base),
                "bearer_methods_supported": ["header"],
                "scopes_supported": scopes,
            },
            headers={"Cache-Control": "public, max-age=300"},
        )

    # Clients look at the path-suffixed URL (RFC 9728 section 3.1) and, failing that, at the root.
    suffixed = WELL_KNOWN + base_path(public_url) + resource_path
    return [Route(suffixed, serve, methods=["GET"]), Route(WELL_KNOWN, serve, methods=["GET"])]
