import json

import pytest

from bastion.security.origin import OriginPolicy
from tests.answers import jsonrpc_error

LOCAL = OriginPolicy.build([], [], allow_loopback=True)
PUBLIC = OriginPolicy.build(["mcp.example.com"], ["https://app.example.com"], allow_loopback=False)


@pytest.mark.parametrize("host", ["localhost:8000", "127.0.0.1:8000", "[::1]:8000", "LOCALHOST", "127.0.0.1"])
def test_loopback_hosts_pass_locally(host):
    assert LOCAL.host_allowed(host)


@pytest.mark.parametrize(
    "host",
    [
        None,
        "",
        "evil.example",
        "evil.example:8000",
        "localhost.evil.example",
        "127.0.0.1.nip.io",
        "[::1",
        "localhost@evil.example",
    ],
)
def test_rebinding_hosts_are_refused(host):
    assert not LOCAL.host_allowed(host)


def test_public_server_accepts_only_its_names():
    assert PUBLIC.host_allowed("mcp.example.com")
    assert PUBLIC.host_allowed("mcp.example.com:443")
    assert not PUBLIC.host_allowed("localhost:8000")
    assert not PUBLIC.host_allowed("other.example.com")


@pytest.mark.parametrize(
    "origin, allowed",
    [
        (None, True),  # not a browser
        ("http://localhost:3000", True),
        ("http://127.0.0.1:6274", True),
        ("https://evil.example", False),
        ("null", False),
        ("file://", False),
        ("http://localhost.evil.example", False),
        ("javascript:alert(1)", False),
    ],
)
def test_origins_locally(origin, allowed):
    assert LOCAL.origin_allowed(origin, "localhost:8000") is allowed


def test_origins_publicly():
    assert PUBLIC.origin_allowed("https://app.example.com", "mcp.example.com")
    assert PUBLIC.origin_allowed("https://mcp.example.com", "mcp.example.com")  # same origin
    assert not PUBLIC.origin_allowed("http://localhost:3000", "mcp.example.com")
    assert not PUBLIC.origin_allowed("https://evil.example", "evil.example")  # Host itself not allowed


async def test_null_origin_passes_only_when_the_browser_says_same_origin():
    from bastion.security.origin import OriginGate

    statuses = []

    async def app(scope, receive, send):
        statuses.append(200)

    async def send(message):
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    gate = OriginGate(app, LOCAL)
    for fetch_site, expected in [(b"same-origin", 200), (b"cross-site", 403), (None, 403)]:
        headers = [(b"host", b"127.0.0.1:8000"), (b"origin", b"null")]
        if fetch_site:
            headers.append((b"sec-fetch-site", fetch_site))
        statuses.clear()
        await gate({"type": "http", "headers": headers}, None, send)
        assert statuses == [expected]


# --- strict parsing: each hostile value beside the browser's own spelling it imitates ---------------------------
ORIGIN_PAIRS = [
    ("http://localhost:3000", "http://localhost:3000, https://evil.example"),  # a comma-joined list
    ("http://localhost:3000", "http://localhost:3000 https://evil.example"),
    ("http://localhost:3000", "http://localhost:3000@evil.example"),  # userinfo: the host is evil.example
    ("http://127.0.0.1:6274", "http://user@127.0.0.1:6274"),
    ("http://127.0.0.1:6274", "http://user:pw@127.0.0.1:6274"),
    ("http://localhost:3000", "http://localhost:30x0"),  # a port that is not a number
    ("http://localhost:3000", "http://localhost:+3000"),
    ("http://localhost:3000", "http://localhost:99999"),  # out of range
    ("http://localhost:3000", "http://localhost:03000"),  # browsers never write leading zeros
    ("http://localhost", "http://localhost:80"),  # nor the default port
    ("https://localhost", "https://localhost:443"),
    ("https://localhost", "https://localhost:"),
    ("http://localhost:3000", "http://localhost:3000/"),  # no path, query or fragment
    ("http://localhost:3000", "http://localhost:3000/app?x=1#y"),
    ("http://localhost:3000", "http://localhost\xa0:3000"),  # a raw non-ASCII byte (as ASGI decodes it)
    ("http://localhost:3000", "http://localhost:3000\xff"),
    ("http://localhost:3000", "http://loca\u0131host:3000"),
    ("http://localhost:3000", "http://localhost%2e:3000"),
    ("http://localhost:3000", "http://localhost.:3000"),
    ("http://[::1]:3000", "http://[::1%25eth0]:3000"),  # zone identifiers
    ("http://[::1]:3000", "http://[::g]:3000"),
    ("http://[::1]:3000", "http://[::1]x:3000"),
    ("http://localhost:3000", "http:/localhost:3000"),
    ("http://localhost:3000", "ws://localhost:3000"),
    ("http://localhost:3000", "http://localhost:3000\x00"),
]


@pytest.mark.parametrize("happy, hostile", ORIGIN_PAIRS)
def test_origins_are_parsed_strictly(happy, hostile):
    assert LOCAL.origin_allowed(happy, "localhost:8000")
    assert not LOCAL.origin_allowed(hostile, "localhost:8000")


def test_origin_case_and_surrounding_spaces_do_not_matter():
    assert LOCAL.origin_allowed("HTTP://LocalHost:3000", "localhost:8000")
    assert LOCAL.origin_allowed(" http://localhost:3000\t", "localhost:8000")


HOST_PAIRS = [
    ("localhost:8000", "localhost:8000@evil.example"),
    ("localhost:8000", "user@localhost:8000"),
    ("localhost:8000", "localhost:80x0"),  # junk port
    ("localhost:8000", "localhost:8000:9000"),
    ("localhost:8000", "localhost:99999"),
    ("localhost:8000", "localhost:08000"),
    ("localhost", "localhost:"),
    ("127.0.0.1:8000", "127.0.0.1:8000/path"),
    ("127.0.0.1:8000", "127.0.0.1:8000?x"),
    ("localhost:8000", "localhost:8000, evil.example"),
    ("localhost:8000", "localhost:8000 evil.example"),
    ("localhost:8000", "localhost\xa0:8000"),
    ("localhost:8000", "localhost:8000\xff"),
    ("[::1]:8000", "[::1]x:8000"),
    ("[::1]:8000", "[::1%25lo]:8000"),
    ("[::1]:8000", "[::1:8000"),
]


@pytest.mark.parametrize("happy, hostile", HOST_PAIRS)
def test_hosts_are_parsed_strictly(happy, hostile):
    assert LOCAL.host_allowed(happy)
    assert not LOCAL.host_allowed(hostile)
    assert not PUBLIC.host_allowed(hostile.replace("localhost", "mcp.example.com"))


def test_same_origin_compares_ports_with_the_schemes_default():
    assert PUBLIC.origin_allowed("https://mcp.example.com", "mcp.example.com:443")
    assert PUBLIC.origin_allowed("http://mcp.example.com", "mcp.example.com")
    assert not PUBLIC.origin_allowed("http://mcp.example.com", "mcp.example.com:443")
    own_port = OriginPolicy.build(["mcp.example.com:8443"], [], allow_loopback=False)
    assert own_port.origin_allowed("https://mcp.example.com:8443", "mcp.example.com:8443")
    assert not own_port.origin_allowed("https://mcp.example.com", "mcp.example.com:8443")
    assert not own_port.origin_allowed("https://mcp.example.com@evil.example:8443", "mcp.example.com:8443")


def test_configured_origins_are_normalized_like_a_browsers():
    policy = OriginPolicy.build(["mcp.example.com"], ["HTTPS://App.Example.com:443/", "not an origin"], False)
    assert policy.allowed_origins == frozenset({"https://app.example.com"})
    assert policy.origin_allowed("https://app.example.com", "mcp.example.com")
    assert not policy.origin_allowed("https://app.example.com:443", "mcp.example.com")
    assert not policy.origin_allowed("https://app.example.com.evil.example", "mcp.example.com")


# --- the gate: several headers, and nothing behind it runs -------------------------------------------------------
async def gate_call(headers: list[tuple[bytes, bytes]]) -> tuple[int, bytes, int]:
    """(status, body, how many times the app behind the gate ran)."""
    from bastion.security.origin import OriginGate

    ran, sent = [], []

    async def app(scope, receive, send):
        ran.append(1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async def send(message):
        sent.append(message)

    await OriginGate(app, LOCAL)({"type": "http", "headers": headers}, None, send)
    return sent[0]["status"], sent[1]["body"], len(ran)


HOST = (b"host", b"127.0.0.1:8000")


@pytest.mark.parametrize(
    "happy, hostile, status",
    [
        ([HOST], [HOST, HOST], 400),  # several Host headers, even equal ones
        ([HOST], [HOST, (b"host", b"evil.example")], 400),
        ([HOST], [], 400),  # none
        ([HOST], [(b"host", b"127.0.0.1:80x0")], 400),  # malformed
        ([HOST], [(b"host", b"user@127.0.0.1:8000")], 400),
        ([HOST], [(b"host", b"evil.example")], 403),  # well-formed, another name
        ([HOST, (b"origin", b"http://localhost:3000")], [HOST, *[(b"origin", b"http://localhost:3000")] * 2], 403),
        (
            [HOST, (b"origin", b"http://localhost:3000")],
            [HOST, (b"origin", b"http://localhost:3000"), (b"origin", b"https://evil.example")],
            403,
        ),
        ([HOST, (b"origin", b"http://localhost:3000")], [HOST, (b"origin", b"http://localhost:3000\xa0")], 403),
        (
            [HOST, (b"origin", b"null"), (b"sec-fetch-site", b"same-origin")],
            [HOST, (b"origin", b"null"), (b"sec-fetch-site", b"same-origin"), (b"sec-fetch-site", b"cross-site")],
            403,
        ),
    ],
)
async def test_the_gate_refuses_what_a_browser_cannot_send(happy, hostile, status):
    assert (await gate_call(happy))[::2] == (200, 1)
    refused, body, ran = await gate_call(hostile)
    assert (refused, ran) == (status, 0)
    assert json.loads(body)["error"]["code"] == -32000


@pytest.fixture
async def recorded():
    from bastion import App
    from tests.clients import asgi_client

    app = App("origins")
    calls: list[str] = []

    @app.tool
    def record() -> str:
        """Records that it ran."""
        calls.append("ran")
        return "ran"

    async with asgi_client(app) as client:
        yield client, calls


ORIGIN_REFUSED = (403, "Forbidden: Origin not allowed")
HOST_REFUSED = (400, "Bad Request: exactly one well-formed Host header is required")


@pytest.mark.parametrize(
    "hostile, answer",
    [
        ([(b"origin", b"http://localhost:3000@evil.example")], ORIGIN_REFUSED),
        ([(b"origin", b"http://localhost:3000, https://evil.example")], ORIGIN_REFUSED),
        ([(b"origin", b"http://localhost:3000"), (b"origin", b"https://evil.example")], ORIGIN_REFUSED),
        ([(b"origin", b"http://localhost:30x0")], ORIGIN_REFUSED),
        ([(b"origin", b"http://localhost\xa0:3000")], ORIGIN_REFUSED),
        ([(b"host", b"127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")], HOST_REFUSED),
        ([(b"host", b"127.0.0.1:8000@evil.example")], HOST_REFUSED),
    ],
)
async def test_the_tool_does_not_run_behind_a_refused_origin_or_host(recorded, hostile, answer):
    from tests.mcp.conftest import modern_body, modern_headers

    client, calls = recorded
    body = modern_body("tools/call", {"name": "record", "arguments": {}})
    headers = list(modern_headers("tools/call", "record").items())
    happy = await client.post("/mcp", json=body, headers=[*headers, ("origin", "http://localhost:3000")])
    assert happy.status_code == 200 and calls == ["ran"]
    refused = await client.post("/mcp", json=body, headers=[*headers, *hostile])
    status, message = answer
    assert jsonrpc_error(refused, status, -32000)["message"] == message
    assert calls == ["ran"]  # the happy call only, not again


def test_same_origin_needs_the_same_scheme_too():
    # Behind https (public_url), a plain-http page on the same host is another origin: a network attacker writes it.
    public = OriginPolicy.build(["mcp.example.com"], ["https://mcp.example.com"], allow_loopback=False, scheme="https")
    assert public.origin_allowed("https://mcp.example.com", "mcp.example.com")
    assert not public.origin_allowed("http://mcp.example.com", "mcp.example.com")
    assert not public.origin_allowed("http://mcp.example.com", "mcp.example.com", "http")  # public_url decides
    # Without public_url, the scheme the request came in on decides.
    assert PUBLIC.origin_allowed("http://mcp.example.com", "mcp.example.com", "http")
    assert not PUBLIC.origin_allowed("http://mcp.example.com", "mcp.example.com", "https")
    assert not PUBLIC.origin_allowed("https://mcp.example.com", "mcp.example.com", "http")


async def test_the_gate_refuses_a_plain_http_page_on_the_public_host():
    from bastion.compose import build
    from tests.clients import asgi_client, local_settings
    from tests.mcp.conftest import build_app

    # Unauthenticated on purpose (insecure_no_auth): the Origin check stands alone.
    settings = local_settings(host="0.0.0.0", public_url="https://mcp.example.com", insecure_no_auth=True)
    async with asgi_client(build(build_app(), settings), base="https://mcp.example.com") as http:
        same = await http.get("/healthz", headers={"origin": "https://mcp.example.com"})
        plain = await http.get("/healthz", headers={"origin": "http://mcp.example.com"})
    assert same.status_code == 200
    assert jsonrpc_error(plain, 403, -32000)["message"] == ORIGIN_REFUSED[1]
