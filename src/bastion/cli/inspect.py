"""`bastion inspect FILE|URL`: what a server offers (tools with their parameters, output and the scopes they need;
resources, templates, prompts), as text for a person or JSON for a program."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson

from .command import Command
from .peer import Peer, listed, open_peer, peer_options


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", help="server.py, server.py:app, package.module:app, or http(s)://host/mcp")
    parser.add_argument("--json", action="store_true", help="one JSON document")
    peer_options(parser)


def run(args: argparse.Namespace) -> None:
    asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> None:
    async with open_peer(args.target, args.protocol, headers_of(args.header), args.debug) as peer:
        found = await offered(peer)
    if args.json:
        print(orjson.dumps(found, option=orjson.OPT_INDENT_2).decode())
    else:
        print(describe(found))


def headers_of(given: list[str]) -> dict[str, str]:
    from .refuse import refuse

    headers = {}
    for item in given:
        name, colon, value = item.partition(":")
        if not colon or not name.strip():
            refuse(f"--header {item!r}: write it as 'Name: value'")
        headers[name.strip().lower()] = value.strip()
    return headers


async def offered(peer: Peer) -> dict[str, Any]:
    tools = await listed(peer, "tools/list", "tools")
    if peer.app is not None:  # a server file: the scopes each tool needs are known (a URL does not say)
        registered = peer.app.registry.tools
        for tool in tools:
            if tool["name"] in registered and registered[tool["name"]].scopes:
                tool["scopes"] = list(registered[tool["name"]].scopes)
    return {
        "server": peer.name,
        "protocol": peer.protocol,
        "tools": tools,
        "resources": await listed(peer, "resources/list", "resources"),
        "resourceTemplates": await listed(peer, "resources/templates/list", "resourceTemplates"),
        "prompts": await listed(peer, "prompts/list", "prompts"),
    }


def describe(found: dict[str, Any]) -> str:
    lines = [f"{found['server']} (protocol {found['protocol']})"]
    lines.append(f"\nTools ({len(found['tools'])})")
    for tool in found["tools"]:
        schema = tool.get("inputSchema") or {}
        required = set(schema.get("required") or [])
        params = ", ".join(
            f"{name}{'' if name in required else '?'}: {_type(prop)}"
            for name, prop in (schema.get("properties") or {}).items()
        )
        lines.append(f"  {tool['name']}({params})")
        if tool.get("description"):
            lines.append(f"      {tool['description'].splitlines()[0]}")
        if tool.get("scopes"):
            lines.append(f"      needs scopes: {' '.join(tool['scopes'])}")
        if tool.get("outputSchema"):
            lines.append(f"      returns: {_type(tool['outputSchema'])}")
    lines.append(f"\nResources ({len(found['resources'])})")
    lines += [
        f"  {item['uri']}  {item.get('description') or item.get('name') or ''}".rstrip() for item in found["resources"]
    ]
    lines.append(f"\nResource templates ({len(found['resourceTemplates'])})")
    lines += [
        f"  {item['uriTemplate']}  {item.get('description') or item.get('name') or ''}".rstrip()
        for item in found["resourceTemplates"]
    ]
    lines.append(f"\nPrompts ({len(found['prompts'])})")
    for prompt in found["prompts"]:
        arguments = ", ".join(f"{a['name']}{'' if a.get('required') else '?'}" for a in prompt.get("arguments") or [])
        lines.append(f"  {prompt['name']}({arguments})  {prompt.get('description') or ''}".rstrip())
    return "\n".join(lines)


def _type(schema: dict[str, Any]) -> str:
    if "type" in schema:
        kind = schema["type"]
        if kind == "array" and isinstance(schema.get("items"), dict):
            return f"list[{_type(schema['items'])}]"
        if kind == "object" and schema.get("properties"):
            return "{" + ", ".join(schema["properties"]) + "}"
        return str(kind) if not isinstance(kind, list) else " | ".join(kind)
    for union in ("anyOf", "oneOf"):
        if union in schema:
            return " | ".join(_type(option) for option in schema[union])
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "enum" in schema:
        return " | ".join(repr(value) for value in schema["enum"])
    return "any"


COMMAND = Command("inspect", "list what a server file or URL offers: tools, resources, prompts", configure, run)
