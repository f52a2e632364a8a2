import pytest

from bastion.mcp.errors import INVALID_REQUEST, PARSE_ERROR, McpError, http_status
from bastion.mcp.jsonrpc import Notification, Request, Response, parse


def test_request_notification_and_response_are_told_apart():
    assert parse(b'{"jsonrpc":"2.0","id":1,"method":"ping"}') == Request(1, "ping", {})
    assert parse(b'{"jsonrpc":"2.0","method":"notifications/initialized"}') == Notification(
        "notifications/initialized", {}
    )
    assert parse(b'{"jsonrpc":"2.0","id":"a","result":{"x":1}}') == Response("a", {"x": 1}, None)


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"{not json", PARSE_ERROR),
        (b"", PARSE_ERROR),
        (b"\xff\xfe", PARSE_ERROR),
        (b'[{"jsonrpc":"2.0","id":1,"method":"ping"}]', INVALID_REQUEST),  # batches were removed in 2025-06-18
        (b'{"id":1,"method":"ping"}', INVALID_REQUEST),  # no jsonrpc member
        (b'{"jsonrpc":"1.0","id":1,"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":true,"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":{"a":1},"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":null,"method":"ping"}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":5}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"method":"ping","params":[1]}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1}', INVALID_REQUEST),
        (b'{"jsonrpc":"2.0","id":1,"result":1,"error":{}}', INVALID_REQUEST),
        (b'"just a string"', INVALID_REQUEST),
    ],
)
def test_malformed_messages_get_the_right_json_rpc_error(raw, code):
    with pytest.raises(McpError) as caught:
        parse(raw)
    assert caught.value.code == code
    assert http_status(caught.value) == 400
