"""The official conformance suite through Bastion's gateway: a Bastion with no tools of its own fronting
examples/everything.py passes every server scenario of `--suite all`, as the server itself does (tools with
progress, logging, sampling and elicitation, resources, templates, prompts, completion)."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.mcp.conftest import modern_body, modern_headers
from tests.waiting import wait_until

from .conftest import ROOT, bastion_server
from .test_conformance import every_scenario_passes_without_warnings

pytestmark = pytest.mark.e2e


def test_every_server_scenario_passes_through_the_gateway(everything_url, tmp_path):
    servers = [{"name": "everything", "url": everything_url}]
    front = ROOT / "tests" / "gateway" / "servers" / "front.py"
    with bastion_server(front, env={"BASTION_GATEWAY__SERVERS": json.dumps(servers)}) as url:

        def listed() -> bool:  # the gateway lists the server's tools as it starts
            answer = httpx.post(url, headers=modern_headers("tools/list"), json=modern_body("tools/list"), timeout=5)
            return any(tool["name"] == "test_simple_text" for tool in answer.json()["result"]["tools"])

        wait_until(listed, "the gateway serving everything.py's tools")
        every_scenario_passes_without_warnings(url, tmp_path)
