import base64

import pytest

from bastion.mcp.errors import HEADER_MISMATCH, McpError, http_status
from bastion.mcp.headers import check_params, check_standard, decode_value, header_params, validate_annotations


def b64(text: str) -> str:
    return "=?base64?" + base64.b64encode(text.encode()).decode() + "?="


def test_matching_headers_pass():
    check_standard({"mcp-method": "tools/call", "mcp-name": "add"}, "tools/call", {"name": "add"})
    check_standard({"mcp-method": "resources/read", "mcp-name": b64("test://é")}, "resources/read", {"uri": "test://é"})
    check_standard({"mcp-method": "tools/list"}, "tools/list", {})


@pytest.mark.parametrize(
    "headers, method, params",
    [
        ({}, "tools/list", {}),
        ({"mcp-method": "tools/list"}, "tools/call", {"name": "add"}),
        ({"mcp-method": "tools/call"}, "tools/call", {"name": "add"}),
        ({"mcp-method": "tools/call", "mcp-name": "delete_all"}, "tools/call", {"name": "add"}),
        ({"mcp-method": "tools/call", "mcp-name": "=?base64?!!!?="}, "tools/call", {"name": "add"}),
        ({"mcp-method": "tools/call", "mcp-name": "add\r\nx: y"}, "tools/call", {"name": "add"}),
        ({"mcp-method": "tools/call", "mcp-name": "\x00duplicate"}, "tools/call", {"name": "add"}),
    ],
)
def test_mismatches_are_refused(headers, method, params):
    with pytest.raises(McpError) as caught:
        check_standard(headers, method, params)
    assert caught.value.code == HEADER_MISMATCH and http_status(caught.value) == 400


def test_param_headers_follow_x_mcp_header():
    schema = {
        "type": "object",
        "properties": {
            "region": {"type": "string", "x-mcp-header": "Region"},
            "n": {"type": "integer", "x-mcp-header": "N"},
            "flag": {"type": "boolean", "x-mcp-header": "Flag"},
            "query": {"type": "string"},
        },
    }
    validate_annotations(schema)
    found = header_params(schema)
    check_params(
        {"mcp-param-region": "eu", "mcp-param-n": "42.0", "mcp-param-flag": "true"},
        found,
        {"region": "eu", "n": 42, "flag": True, "query": "x"},
    )
    check_params({}, found, {"query": "x"})  # absent arguments need no header
    for headers, args in [
        ({}, {"region": "eu"}),
        ({"mcp-param-region": "us"}, {"region": "eu"}),
        ({"mcp-param-region": "eu"}, {}),
        ({"mcp-param-n": "41"}, {"n": 42}),
        ({"mcp-param-flag": "True"}, {"flag": True}),
    ]:
        with pytest.raises(McpError):
            check_params(headers, found, args)


def test_bad_annotations_are_refused_at_registration():
    for schema in [
        {"properties": {"a": {"type": "number", "x-mcp-header": "A"}}},
        {"properties": {"a": {"type": "string", "x-mcp-header": "A B"}}},
        {"properties": {"a": {"type": "string", "x-mcp-header": "A"}, "b": {"type": "string", "x-mcp-header": "a"}}},
    ]:
        with pytest.raises(ValueError):
            validate_annotations(schema)


def test_decode_plain_and_sentinel_values():
    assert decode_value("plain") == "plain"
    assert decode_value(b64("Hello, 世界")) == "Hello, 世界"
