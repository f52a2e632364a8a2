"""Reading security cookies from the raw Cookie header: exact names only, never a look-alike, never a duplicate."""

import ast
from pathlib import Path

import pytest
from starlette.requests import cookie_parser

import bastion
from bastion.security.cookies import clear_cookie, host_cookie, read_host_cookie

NAME = "bastion-test"
REAL = b"__Host-bastion-test"

# Every byte Python's str.strip or Starlette's cookie parser (which decodes headers as latin-1) drops around a
# name, checked here so that the list below cannot silently miss one.
STRIPPED = {b for b in range(256) if chr(b).strip() == ""} | {
    b for b in range(256) if b != ord(";") and cookie_parser(f"{chr(b)}__Host-x=1{chr(b)}").get("__Host-x") == "1"
}
# ... and every other byte as well: no byte next to the name may make it ours (but the separators themselves:
# ';' before the name and '=' after it are the syntax that delimits it).
ALL_BUT_SEPARATOR = [b for b in range(256) if b != ord(";")]
PLACES = [("before", b) for b in ALL_BUT_SEPARATOR] + [("after", b) for b in ALL_BUT_SEPARATOR if b != ord("=")]


def scope(*headers: bytes, name: bytes = b"cookie") -> dict:
    return {"type": "http", "headers": [(name, header) for header in headers]}


def test_the_stripped_bytes_include_the_reported_ones():
    assert {0x85, 0xA0, 0x09, 0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x1F, 0x20} <= STRIPPED
    # What the lenient parser does with one of them: the look-alike passes for the real cookie.
    assert cookie_parser("\xa0__Host-x=evil")["__Host-x"] == "evil"


def test_the_exact_name_is_read():
    assert read_host_cookie(scope(REAL + b"=v1"), NAME) == "v1"
    assert read_host_cookie(scope(b"a=1; " + REAL + b"=v1; b=2"), NAME) == "v1"
    assert read_host_cookie(scope(b"a=1;" + REAL + b"=v1"), NAME) == "v1"  # no space after ';'
    assert read_host_cookie(scope(b"a=1", REAL + b"=v1"), NAME) == "v1"  # several Cookie headers (HTTP/2)
    assert read_host_cookie(scope(REAL + b"=v1", name=b"Cookie"), NAME) == "v1"
    assert read_host_cookie(scope(REAL + b"=A-z_0.9~"), NAME) == "A-z_0.9~"


@pytest.mark.parametrize("where, byte", PLACES, ids=[f"{where}-0x{byte:02x}" for where, byte in PLACES])
def test_a_byte_before_or_after_the_name_makes_another_cookie(where, byte):
    extra = bytes([byte])
    lookalike = (extra + REAL if where == "before" else REAL + extra) + b"=evil"
    # Alone, first, after a separator, or in a Cookie header of its own: never ours.
    for headers in ([lookalike], [b"a=1; " + lookalike], [b"a=1", lookalike]):
        assert read_host_cookie(scope(*headers), NAME) is None, headers
    # Beside the real cookie, in either order: the real one is read, and the look-alike is no duplicate of it.
    for headers in (
        [lookalike + b"; " + REAL + b"=good"],
        [REAL + b"=good; " + lookalike],
        [lookalike, REAL + b"=good"],
        [REAL + b"=good", lookalike],
    ):
        assert read_host_cookie(scope(*headers), NAME) == "good", headers


@pytest.mark.parametrize(
    "lookalike",
    [
        b"__host-bastion-test",  # the prefix in another case (older browsers let anyone set it)
        b"__HOST-bastion-test",
        b"bastion-test",  # without the prefix
        b"__Host-bastion-test\xc2\xa0",  # the UTF-8 spelling of U+00A0, as document.cookie would write it
        b"\xc2\x85__Host-bastion-test",
        b"__Host-bastion\xa0-test",
        b"__Host-bastion-test ",
        b"  __Host-bastion-test",
    ],
)
def test_other_spellings_are_other_cookies(lookalike):
    assert read_host_cookie(scope(lookalike + b"=evil"), NAME) is None
    assert read_host_cookie(scope(b"a=1; " + lookalike + b"=evil"), NAME) is None


@pytest.mark.parametrize(
    "headers",
    [
        [REAL + b"=one; " + REAL + b"=two"],
        [REAL + b"=same; " + REAL + b"=same"],
        [REAL + b"=one", REAL + b"=two"],  # the duplicate in another Cookie header
        [b"a=1; " + REAL + b"=one; b=2; " + REAL + b"=two"],
    ],
)
def test_a_name_sent_twice_is_ambiguous_and_absent(headers):
    assert read_host_cookie(scope(*headers), NAME) is None


@pytest.mark.parametrize(
    "value",
    [b"", b'"quoted"', b"with space", b"v ", b" v", b"caf\xc3\xa9", b"a\xa0", b"a,b", b"a\\b", b"a=b", b"\x00"],
)
def test_values_that_are_not_plain_tokens_are_absent(value):
    # No cookie of ours is ever anything but a plain token, so anything else is not ours.
    assert read_host_cookie(scope(REAL + b"=" + value), NAME) is None


def test_pairs_without_a_value_and_other_headers_are_ignored():
    assert read_host_cookie(scope(b"__Host-bastion-test"), NAME) is None
    assert read_host_cookie(scope(b"; ; =; a"), NAME) is None
    assert read_host_cookie(scope(), NAME) is None
    assert read_host_cookie({"type": "http", "headers": [(b"x-cookie", REAL + b"=v")]}, NAME) is None
    assert read_host_cookie(scope(REAL + b"=v", name=b"set-cookie"), NAME) is None


@pytest.mark.parametrize("name", ["", "a b", "a;b", "a=b", "caf\xe9", "a\xa0", "__Host-x", "a.b"])
def test_only_plain_names_can_be_read_or_set(name):
    with pytest.raises(ValueError):
        read_host_cookie(scope(b"a=1"), name)
    with pytest.raises(ValueError):
        host_cookie(name, "v")


def test_what_is_set_is_what_is_read():
    header = host_cookie(NAME, "tok-en_1.2~", 60)
    assert header == "__Host-bastion-test=tok-en_1.2~; Path=/; Secure; HttpOnly; SameSite=Lax; Max-Age=60"
    pair = header.split(";", 1)[0].encode()
    assert read_host_cookie(scope(pair), NAME) == "tok-en_1.2~"
    assert clear_cookie(NAME).startswith("__Host-bastion-test=; ") and clear_cookie(NAME).endswith("Max-Age=0")
    for bad in ("a b", "a;b", "\xe9", "a\xa0"):
        with pytest.raises(ValueError):
            host_cookie(NAME, bad)


def test_no_code_reads_cookies_any_other_way():
    # request.cookies (Starlette's lenient parser) or a Cookie header read by hand would bring look-alikes back.
    package = Path(bastion.__file__).parent
    offenders = []
    for path in package.rglob("*.py"):
        where = path.relative_to(package).as_posix()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and node.attr == "cookies":
                offenders.append(f"{where}:{node.lineno} .cookies")
            header = isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)
            if header and node.value.lower() in ("cookie", b"cookie"):
                offenders.append(f"{where}:{node.lineno} {node.value!r}")
    assert [o for o in offenders if not o.startswith("security/cookies.py:")] == []
