"""`bastion call FILE|URL TOOL key=value ...`: call one tool and print what it answered.

Each `key=value` is one argument: the value as JSON when it reads as JSON (42, true, ["a","b"], {"x":1}), else
as the string it is; `key:=value` forces JSON, `key==value` forces a string. Exit status 1 when the tool answers
with an error, 2 when the call could not be made."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import orjson

from .command import Command
from .inspect import headers_of
from .peer import open_peer, peer_options
from .refuse import refuse


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="server.py, server.py:app, package.module:app, or http(s)://host/mcp")
    parser.add_argument("tool", help="the tool's name")
    parser.add_argument("arguments", nargs="*", help="key=value (JSON if it reads as JSON), key:=json, key==string")
    parser.add_argument("--json", action="store_true", help="print the whole result as JSON")
    peer_options(parser)


def parse_arguments(given: list[str]) -> dict[str, Any]:
    arguments: dict[str, Any] = {}
    for item in given:
        if "==" in item and item.index("==") <= item.index("="):
            key, _, value = item.partition("==")
            arguments[key] = value
            continue
        if ":=" in item and item.index(":=") < item.index("="):
            key, _, raw = item.partition(":=")
            try:
                arguments[key] = orjson.loads(raw)
            except orjson.JSONDecodeError:
                refuse(f"argument {key!r}: {raw!r} is not JSON (write {key}={raw} for a string)")
            continue
        key, equals, raw = item.partition("=")
        if not equals or not key:
            refuse(f"argument {item!r}: write it as key=value")
        try:
            arguments[key] = orjson.loads(raw)
        except orjson.JSONDecodeError:
            arguments[key] = raw
    return arguments


def run(args: argparse.Namespace) -> None:
    sys.exit(asyncio.run(_run(args)))


async def _run(args: argparse.Namespace) -> int:
    arguments = parse_arguments(args.arguments)
    async with open_peer(args.target, args.protocol, headers_of(args.header), args.debug) as peer:
        result = await peer.request("tools/call", {"name": args.tool, "arguments": arguments})
    if result.get("resultType") == "input_required":
        asked = ", ".join(str(r.get("method")) for r in (result.get("inputRequests") or {}).values())
        refuse(f"{args.tool} asks the user something: bastion call cannot answer {asked}; use an MCP client")
    if args.json:
        print(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())
    else:
        for block in result.get("content") or []:
            if block.get("type") == "text":
                print(block.get("text", ""))
            else:
                print(f"[{block.get('type')} content: {block.get('mimeType') or block.get('uri') or ''}]".rstrip())
        if "structuredContent" in result and not result.get("isError") and not _shown(result):
            print(orjson.dumps(result["structuredContent"], option=orjson.OPT_INDENT_2).decode())
    return 1 if result.get("isError") else 0


def _shown(result: dict[str, Any]) -> bool:
    """Whether the text printed already says what the structured content does (a tool's value, as JSON)."""
    text = "".join(b.get("text", "") for b in result.get("content") or [] if b.get("type") == "text").strip()
    try:
        said = orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    structured = result["structuredContent"]
    return said == structured or (
        isinstance(structured, dict) and list(structured) == ["result"] and said == structured["result"]
    )


COMMAND = Command("call", "call one tool of a server file or URL and print its answer", configure, run)
