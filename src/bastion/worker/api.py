"""The worker API, in Arcade's JSON shapes: a platform lists the tools and invokes them directly.

GET /worker/health needs no token; /worker/tools and /worker/tools/invoke need a worker token (worker/auth.py).
Tools run exactly as over MCP (Server.call_tool): validated inputs, declared secrets only (here they come with
the call), errors as results. The worker secret never reaches logs, errors or tools.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from ..mcp.exchange import Exchange
from ..ops.audit import AuditEvent, AuditTrail, bind_request
from ..ops.logs import clean
from ..principal import Principal
from ..security.body import BodyError, request_body
from . import auth

if TYPE_CHECKING:
    from ..mcp.registry import Tool
    from ..mcp.server import Server

log = logging.getLogger("bastion.worker")
MAX_BODY = 1_048_576
VAL_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean", "array": "array"}


def _value_schema(prop: dict[str, Any]) -> dict[str, Any]:
    kind = prop.get("type")
    schema: dict[str, Any] = {"val_type": VAL_TYPES.get(kind, "json") if isinstance(kind, str) else "json"}
    items = prop.get("items")
    if schema["val_type"] == "array" and isinstance(items, dict):
        inner = items.get("type")
        schema["inner_val_type"] = VAL_TYPES.get(inner, "json") if isinstance(inner, str) else "json"
    if isinstance(prop.get("enum"), list):
        schema["enum"] = [str(v) for v in prop["enum"]]
    return schema


class WorkerAPI:
    def __init__(
        self,
        server: Server,
        secret: str,
        max_token_seconds: int,
        require_exp: bool,
        audit: AuditTrail | None = None,
    ) -> None:
        self.server = server
        self.audit = audit  # told of each invocation (worker.invoked) and, sampled, each refused token
        self._secret = secret
        self.max_token_seconds = max_token_seconds
        self.require_exp = require_exp
        if not require_exp:
            log.warning("worker tokens without exp are accepted (compatibility setting); prefer expiring tokens")

    def routes(self) -> list[BaseRoute]:
        return [
            Route("/worker/health", self.health, methods=["GET"]),
            Route("/worker/tools", self.tools, methods=["GET"]),
            Route("/worker/tools/invoke", self.invoke, methods=["POST"]),
        ]

    @property
    def toolkit(self) -> dict[str, Any]:
        return {"name": self.server.info["name"], "description": None, "version": self.server.info["version"]}

    def _refusal(self, request: Request) -> Response | None:
        header = request.headers.get("authorization", "")
        if not header.lower().startswith("bearer "):
            return JSONResponse({"error": "a worker token is required"}, 401, headers=_challenge(None))
        try:
            auth.verify(header[7:].strip(), self._secret, self.max_token_seconds, self.require_exp)
        except auth.WorkerTokenError as exc:
            if self.audit is not None:
                bind_request(request.scope)
                self.audit.record_sampled(AuditEvent("worker.refused", "failure", details={"reason": str(exc)}))
            return JSONResponse({"error": f"invalid worker token: {exc}"}, 401, headers=_challenge("invalid_token"))
        return None

    async def health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok", "tool_count": len(self.server.registry.tools)})

    def definition(self, tool: Tool) -> dict[str, Any]:
        schema = tool.input_schema or tool.signature.input_schema
        required = set(schema.get("required", []))
        parameters = [
            {
                "name": name,
                "required": name in required,
                "description": prop.get("description"),
                "value_schema": _value_schema(prop),
                "inferrable": True,
            }
            for name, prop in (schema.get("properties") or {}).items()
            if isinstance(prop, dict)
        ]
        output = tool.signature.output_schema
        result = (output or {}).get("properties", {}).get("result") if tool.signature.wrap_output else output
        authorization = None
        if tool.requires_upstream:
            authorization = {
                "provider_id": tool.requires_upstream,
                "provider_type": "oauth2",
                "oauth2": {"scopes": list(tool.upstream_scopes)},
            }
        return {
            "name": tool.name,
            "fully_qualified_name": f"{self.toolkit['name']}.{tool.name}",
            "description": tool.description,
            "toolkit": self.toolkit,
            "input": {"parameters": parameters},
            "output": {
                "description": None,
                "available_modes": ["value", "error", "null"],
                "value_schema": _value_schema(result) if isinstance(result, dict) else {"val_type": "string"},
            },
            "requirements": {
                "authorization": authorization,
                "secrets": [{"key": key} for key in tool.requires_secrets] or None,
                "metadata": None,
            },
        }

    async def tools(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        return JSONResponse([self.definition(tool) for tool in self.server.registry.tools.values()])

    async def invoke(self, request: Request) -> Response:
        refusal = self._refusal(request)
        if refusal is not None:
            return refusal
        started = time.perf_counter()
        try:
            body = await request_body(request, MAX_BODY)
        except BodyError as exc:
            return JSONResponse({"error": f"invalid tool call request: {exc}"}, exc.status)
        try:
            call = orjson.loads(body)
            execution_id, tool_ref, inputs, context = self._parse(call)
        except (ValueError, orjson.JSONDecodeError) as exc:
            message = str(exc) if not isinstance(exc, orjson.JSONDecodeError) else "the body is not valid JSON"
            return JSONResponse({"error": f"invalid tool call request: {message}"}, 400)
        tool = self.server.registry.tools.get(tool_ref.get("name", ""))
        toolkit = tool_ref.get("toolkit")
        if tool is None or (toolkit and str(toolkit).lower() != self.toolkit["name"].lower()):
            return JSONResponse({"error": f"tool {tool_ref.get('toolkit')}.{tool_ref.get('name')} not found"}, 404)
        output = await self._run(tool, inputs, context, execution_id)
        if self.audit is not None:
            bind_request(request.scope)
            user = context.get("user_id")
            self.audit.record(
                AuditEvent(
                    "worker.invoked",
                    "failure" if "error" in output else "success",
                    subject=clean(f"worker:{user}") if isinstance(user, str) else "worker",
                    client_id="worker",
                    details={"tool": tool.name, "execution_id": clean(execution_id, 64)},
                )
            )
        return JSONResponse(
            {
                "execution_id": execution_id,
                "finished_at": datetime.now(UTC).isoformat(),
                "duration": round((time.perf_counter() - started) * 1000, 3),
                "success": "error" not in output,
                "output": output,
            }
        )

    @staticmethod
    def _parse(call: Any) -> tuple[str, dict[str, Any], dict[str, Any], dict[str, Any]]:
        if not isinstance(call, dict):
            raise ValueError("expected a JSON object")
        execution_id = call.get("execution_id", call.get("invocation_id")) or ""
        tool, inputs, context = call.get("tool"), call.get("inputs") or {}, call.get("context") or {}
        if not isinstance(execution_id, str) or not isinstance(tool, dict) or not isinstance(tool.get("name"), str):
            raise ValueError("execution_id (string) and tool {name, toolkit} are required")
        if not isinstance(inputs, dict) or not isinstance(context, dict):
            raise ValueError("inputs and context must be objects")
        return execution_id, tool, inputs, context

    async def _run(
        self, tool: Tool, inputs: dict[str, Any], context: dict[str, Any], execution_id: str
    ) -> dict[str, Any]:
        import pydantic

        try:
            tool.signature.validate(inputs)
        except pydantic.ValidationError as exc:
            fields = ", ".join(".".join(str(p) for p in e["loc"]) for e in exc.errors(include_input=False)[:10])
            return {
                "error": {
                    "message": f"invalid input for {tool.name}: {fields}",
                    "kind": "TOOL_RUNTIME_BAD_INPUT_VALUE",
                    "can_retry": False,
                }
            }
        secrets = {
            item["key"]: item["value"]
            for item in context.get("secrets") or []
            if isinstance(item, dict) and isinstance(item.get("key"), str) and isinstance(item.get("value"), str)
        }
        authorization = context.get("authorization") if isinstance(context.get("authorization"), dict) else {}
        token = authorization.get("token") if isinstance(authorization, dict) else None
        upstream = {}
        if tool.requires_upstream and isinstance(token, str):
            upstream[tool.requires_upstream] = {"access_token": token, "scopes": list(tool.upstream_scopes)}
        user = context.get("user_id")
        principal = Principal(
            subject=f"worker:{user}" if isinstance(user, str) else "worker", client_id="worker", upstream=upstream
        )
        # Not interactive: the engine calling brings the user's token (context.authorization); nobody here to link.
        exchange = Exchange(
            execution_id or "worker", "tools/call", "2025-11-25", False, principal=principal, interactive=False
        )
        result = await self.server.call_tool(tool, inputs, exchange, secrets)
        if result.get("isError"):
            text = " ".join(b.get("text", "") for b in result.get("content", []) if isinstance(b, dict))
            return {"error": {"message": text or "the tool failed", "kind": "TOOL_RUNTIME_FATAL", "can_retry": False}}
        structured = result.get("structuredContent")
        if structured is not None:
            value = structured.get("result", structured) if tool.signature.wrap_output else structured
        else:
            value = " ".join(b.get("text", "") for b in result.get("content", []) if b.get("type") == "text")
        return {"value": value}


def _challenge(error: str | None) -> dict[str, str]:
    # A 401 names its scheme (RFC 9110 section 11.6.1); RFC 6750's error code only when a token was sent.
    value = 'Bearer realm="worker"' + (f', error="{error}"' if error else "")
    return {"WWW-Authenticate": value, "Cache-Control": "no-store"}
