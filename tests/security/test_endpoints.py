"""endpoint_problem: which URLs may serve as another server's endpoints (redirect targets, token endpoints)."""

import pytest

from bastion.security.endpoints import endpoint_problem, is_loopback_host


@pytest.mark.parametrize(
    "url",
    [
        "https://idp.example/authorize",
        "https://idp.example:8443/oauth2/v1/authorize?tenant=a",
        "HTTPS://IDP.EXAMPLE/authorize",
        "https://[2001:db8::1]/authorize",
        "http://127.0.0.1:8080/authorize",
        "http://127.5.6.7/authorize",
        "http://localhost:3000/authorize",
        "http://[::1]:3000/authorize",
    ],
)
def test_usable_endpoints(url: str) -> None:
    assert endpoint_problem(url) is None


@pytest.mark.parametrize(
    "url, problem",
    [
        ("javascript:alert(1)", "does not use https"),
        ("data:text/html,x", "does not use https"),
        ("file:///etc/passwd", "does not use https"),
        ("ftp://idp.example/", "does not use https"),
        ("/authorize", "not an absolute URL"),
        ("//idp.example/authorize", "not an absolute URL"),
        ("http://idp.example/authorize", "plain http"),
        ("http://10.0.0.1/authorize", "plain http"),
        ("http://localhost.evil.example/", "plain http"),
        ("https://u:p@idp.example/", "user information"),
        ("https://idp.example/#x", "fragment"),
        ("https://idp.example/#", "fragment"),
        ("https:///x", "no host"),
        ("https://idp.example:x/", "not a valid URL"),
        ("https://[::1/", "not a valid URL"),
        ("https://idp.example/a b", "whitespace"),
        ("https://idp.example/\\x", "backslash"),
        ("https://idp.éxample/", "non-ASCII"),
        ("https://idp.example/" + "a" * 2000, "longer than"),
        ("", "not a URL string"),
        (None, "not a URL string"),
        (42, "not a URL string"),
    ],
)
def test_unusable_endpoints(url: object, problem: str) -> None:
    found = endpoint_problem(url)
    assert found is not None and problem in found
    if isinstance(url, str) and url:
        assert url not in found  # the reason never quotes the value


@pytest.mark.parametrize(
    "host, loopback",
    [("localhost", True), ("127.0.0.1", True), ("::1", True), ("10.0.0.1", False), ("localhost.example", False)],
)
def test_loopback_hosts(host: str, loopback: bool) -> None:
    assert is_loopback_host(host) is loopback
