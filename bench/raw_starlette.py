"""The baseline: a bare Starlette endpoint doing the same JSON-RPC work as Bastion's tools/call of `add`.

It parses the JSON-RPC request, checks the method and tool name, adds, and answers with the same result shape
(text content plus structured content). No validation of headers, sessions or origins: the cost floor.
"""

import sys

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def mcp(request: Request) -> JSONResponse:
    message = await request.json()
    params = message.get("params") or {}
    if message.get("method") != "tools/call" or params.get("name") != "add":
        return JSONResponse(
            {"jsonrpc": "2.0", "id": message.get("id"), "error": {"code": -32601, "message": "Method not found"}}
        )
    args = params.get("arguments") or {}
    total = int(args["a"]) + int(args["b"])
    result = {"content": [{"type": "text", "text": str(total)}], "structuredContent": {"result": total}}
    return JSONResponse({"jsonrpc": "2.0", "id": message["id"], "result": result})


app = Starlette(routes=[Route("/mcp", mcp, methods=["POST"])])

if __name__ == "__main__":
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=int(sys.argv[1]),
        log_level="warning",
        access_log=False,
        loop="uvloop",
        http="httptools",
    )
