import pytest

from bastion.security.origin import OriginPolicy

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
