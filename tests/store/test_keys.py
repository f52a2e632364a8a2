"""Storage keys: one builder per record kind, in store/keys.py and nowhere else.

The layouts are a compatibility contract (a database written by one version is read by the next), so each
builder's exact output is pinned here; a grant's prefixes must cover everything it issued and nothing of another
grant; and no module of src/bastion may write a key by hand.
"""

import ast
import inspect
import re
from pathlib import Path

import pytest

from bastion.store import Commit, MemoryStore, SQLiteStore, Store, keys

SRC = Path(__file__).resolve().parents[2] / "src" / "bastion"
DOCS = Path(__file__).resolve().parents[2] / "docs" / "storage.md"
HASH = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"

# Literal on purpose: these strings are what existing databases hold.
LAYOUTS = [
    (keys.client("c_1"), "client:c_1"),
    (keys.client("https://app.example/client.json"), "client:https://app.example/client.json"),
    (keys.transaction(HASH), f"authz:{HASH}"),
    (keys.upstream_state(HASH), f"upstream:{HASH}"),
    (keys.grant("g_1-A"), "grant:g_1-A"),
    (keys.code("g_1-A", HASH), f"code:g_1-A:{HASH}"),
    (keys.used_code("g_1-A", HASH), f"usedcode:g_1-A:{HASH}"),
    (keys.access_token("g_1-A", HASH), f"access:g_1-A:{HASH}"),
    (keys.refresh_token("g_1-A", HASH), f"refresh:g_1-A:{HASH}"),
    (keys.rotated_refresh("g_1-A", HASH), f"rotated:g_1-A:{HASH}"),
    (keys.upstream_lease("g_1-A", "corp"), "lease:g_1-A:corp"),
    (keys.upstream_lease("g_1-A", "https://idp.example"), "lease:g_1-A:https://idp.example"),
    (keys.rate_limit(HASH, 28333333, 0), f"ratelimit:{HASH}:28333333:0"),
    (keys.rate_limit(HASH, 0, 9), f"ratelimit:{HASH}:0:9"),
    (keys.mcp_session(HASH), f"mcpsession:{HASH}"),
    (keys.mcp_revision(HASH, 0), f"mcprev:{HASH}:0"),
    (keys.mcp_revision(HASH, 12), f"mcprev:{HASH}:12"),
    (keys.mcp_answer(HASH, HASH), f"mcpanswer:{HASH}:{HASH}"),
    (keys.mcp_stream(HASH, "Ab-9_x"), f"mcpstream:{HASH}:Ab-9_x"),
    (keys.mcp_event(HASH, "Ab-9_x", 3), f"mcpevent:{HASH}:Ab-9_x:3"),
    (keys.audit_tip("main"), "audittip:main"),
    (keys.audit_revision("main", 0), "auditrev:main:0"),
    (keys.audit_revision("main", 1234), "auditrev:main:1234"),
    (keys.audit_event("main", 7), "audit:main:000000000007"),
    (keys.account_session(HASH), f"account:{HASH}"),
    (keys.connected_account(HASH, "slack"), f"connected:{HASH}:slack"),
    (keys.connect_lease(HASH, "slack"), f"connlease:{HASH}:slack"),
    (keys.connect_link(HASH), f"connlink:{HASH}"),
    (keys.connect_state(HASH), f"connstate:{HASH}"),
]


@pytest.mark.parametrize(("built", "stored"), LAYOUTS)
def test_each_builder_writes_the_stored_layout(built, stored):
    assert built == stored


def test_the_kinds_are_exactly_these():
    assert keys.KINDS == (
        "client",
        "authz",
        "upstream",
        "grant",
        "access",
        "refresh",
        "code",
        "rotated",
        "usedcode",
        "lease",
        "ratelimit",
        "mcpsession",
        "mcprev",
        "mcpanswer",
        "mcpstream",
        "mcpevent",
        "audittip",
        "auditrev",
        "audit",
        "account",
        "connected",
        "connlease",
        "connlink",
        "connstate",
    )
    assert {stored.split(":")[0] for _, stored in LAYOUTS} == set(keys.KINDS)
    assert [keys.kind_prefix(kind) for kind in keys.KINDS] == [f"{kind}:" for kind in keys.KINDS]


def test_a_grant_issues_under_these_prefixes():
    assert keys.issued_under("g_1") == ["access:g_1:", "refresh:g_1:", "code:g_1:", "rotated:g_1:", "usedcode:g_1:"]
    assert keys.access_tokens("g_1") == "access:g_1:"
    assert keys.access_token("g_1", HASH).startswith(keys.access_tokens("g_1"))


def test_a_session_owns_under_these_prefixes_and_nothing_of_another_session():
    mine = keys.session_under("ab")
    assert mine == ["mcprev:ab:", "mcpanswer:ab:", "mcpstream:ab:", "mcpevent:ab:"]
    records = [
        keys.mcp_revision("ab", 1),
        keys.mcp_answer("ab", HASH),
        keys.mcp_stream("ab", "s"),
        keys.mcp_event("ab", "s", 1),
    ]
    assert all(sum(r.startswith(p) for p in mine) == 1 for r in records)
    assert not any(keys.mcp_session("ab").startswith(p) for p in mine)  # deleted by its exact key
    for other in ["abc", "a", "AB"]:
        theirs = [keys.mcp_revision(other, 1), keys.mcp_answer(other, HASH), keys.mcp_event(other, "s", 1)]
        assert not [key for key in theirs for p in mine if key.startswith(p)]
    # One stream's events, and no other stream's ("s" does not cover "s2").
    assert not keys.mcp_event("ab", "s2", 1).startswith(keys.mcp_events("ab", "s"))


@pytest.mark.parametrize("bad", [("", 0), ("a:b", 0), ("ab", -1), ("ab", True), ("ab", 1.5)])
def test_a_malformed_session_key_is_refused(bad):
    session, number = bad
    with pytest.raises(ValueError):
        keys.mcp_revision(session, number)
    with pytest.raises(ValueError):
        keys.mcp_event(session, "s", number) if session in ("", "a:b") else keys.mcp_event("ab", "a:b", 0)


def _per_grant_builders():
    """Every public builder taking (grant_id, hash): found, not listed, so a new kind cannot be forgotten."""
    found = []
    for name, function in inspect.getmembers(keys, inspect.isfunction):
        if name.startswith("_") or function.__module__ != keys.__name__:
            continue
        if list(inspect.signature(function).parameters)[:1] == ["grant_id"] and name not in (
            "issued_under",
            "access_tokens",
        ):
            found.append(function)
    return found


def test_the_grant_prefixes_cover_every_record_a_grant_issued():
    # A renewal lease is not the grant's to delete: it lasts 30 s and expires by itself.
    builders = [b for b in _per_grant_builders() if b not in (keys.grant, keys.upstream_lease)]
    assert {b.__name__ for b in builders} == {"code", "used_code", "access_token", "refresh_token", "rotated_refresh"}
    prefixes = keys.issued_under("ab")
    for builder in builders:
        assert sum(builder("ab", HASH).startswith(p) for p in prefixes) == 1, builder.__name__
    # The grant record itself is deleted by its exact key, never by a prefix (it would catch "grant:abc").
    assert not any(keys.grant("ab").startswith(p) for p in prefixes)


@pytest.mark.parametrize("other", ["abc", "a", "AB", "ab_", "ab-", "b", "xab"])
def test_the_grant_prefixes_cover_nothing_of_another_grant(other):
    prefixes = keys.issued_under("ab")
    theirs = [builder(other, HASH) for builder in _per_grant_builders() if builder is not keys.grant]
    theirs.append(keys.grant(other))
    assert not [key for key in theirs for p in prefixes if key.startswith(p)]
    assert keys.grant(other) != keys.grant("ab")


@pytest.mark.parametrize("bad", ["", "ab:", "ab:c", ":", None, 7])
def test_a_grant_id_that_could_reach_into_another_grant_is_refused(bad):
    # "ab:c" would put access:ab:c:<hash> under grant "ab"'s prefix access:ab:.
    for builder in [keys.grant, keys.issued_under]:
        with pytest.raises(ValueError):
            builder(bad)
    for builder in [keys.code, keys.used_code, keys.access_token, keys.refresh_token, keys.rotated_refresh]:
        with pytest.raises(ValueError):
            builder(bad, HASH)


@pytest.mark.parametrize("bad", ["", "a:b", None])
def test_a_malformed_hash_is_refused(bad):
    for builder in [keys.code, keys.used_code, keys.access_token, keys.refresh_token, keys.rotated_refresh]:
        with pytest.raises(ValueError):
            builder("ab", bad)
    for single in [keys.transaction, keys.upstream_state]:
        with pytest.raises(ValueError):
            single(bad)


@pytest.mark.parametrize("bad", ["", "ab:", "ab:c", None])
def test_a_lease_for_a_grant_id_that_could_reach_into_another_is_refused(bad):
    with pytest.raises(ValueError):
        keys.upstream_lease(bad, "corp")


@pytest.mark.parametrize("bad", ["", None, 7])
def test_a_lease_needs_a_provider(bad):
    with pytest.raises(ValueError):
        keys.upstream_lease("g_1", bad)


@pytest.mark.parametrize(
    ("address", "window", "hit"),
    [("", 1, 0), ("a:b", 1, 0), (HASH, -1, 0), (HASH, 1, -1), (HASH, 1.5, 0), (HASH, True, 0)],
)
def test_a_malformed_rate_limit_key_is_refused(address, window, hit):
    with pytest.raises(ValueError):
        keys.rate_limit(address, window, hit)


def test_an_empty_client_id_or_unknown_kind_is_refused():
    with pytest.raises(ValueError):
        keys.client("")
    for kind in ["", "grants", "grant:", "token"]:
        with pytest.raises(ValueError):
            keys.kind_prefix(kind)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request, tmp_path):
    backend: Store = MemoryStore() if request.param == "memory" else SQLiteStore(tmp_path / "bastion.db")
    yield backend
    await backend.close()


async def test_revoking_a_grant_in_a_store_removes_its_records_and_no_other(store):
    """What Grants.revoke_grant commits, against every backend: grant "ab" beside "abc", "a" and "AB"."""

    def records_of(grant_id):
        issued = [b(grant_id, HASH) for b in _per_grant_builders() if b not in (keys.grant, keys.upstream_lease)]
        return [keys.grant(grant_id), *issued]

    others = [k for g in ["abc", "a", "AB", "ab_"] for k in records_of(g)]
    others += [keys.client("ab"), keys.transaction(HASH), keys.upstream_state(HASH)]
    others += [keys.upstream_lease("ab", "corp"), keys.rate_limit(HASH, 1, 0)]  # not the grant's: they expire
    change = Commit()
    for key in records_of("ab") + others:
        change.set(key, {"k": key})
    assert await store.commit(change)
    assert len(await store.keys("")) == len(records_of("ab")) + len(others)

    assert await store.commit(Commit(delete=[keys.grant("ab")], delete_prefix=keys.issued_under("ab")))

    assert sorted(await store.keys("")) == sorted(others)
    assert await store.keys(keys.kind_prefix("grant")) == sorted(keys.grant(g) for g in ["AB", "a", "ab_", "abc"])


# --- no key written by hand ----------------------------------------------------------------------------------
PREFIXES = tuple(keys.kind_prefix(kind) for kind in keys.KINDS)


def hand_written_keys(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal, or literal part of an f-string, that starts like a storage key."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PREFIXES):
            found.add((node.lineno, node.value))
    return sorted(found)


@pytest.mark.parametrize(
    "source",
    [
        'key = f"grant:{grant_id}"',
        'key = "access:" + grant_id',
        "key = 'usedcode:%s:%s' % (g, h)",
        'key = "authz:{}".format(h)',
        'await store.keys("refresh:")',
        'key = f"{base}upstream:{h}"',
        'KEY = "client:"',
    ],
)
def test_the_scan_finds_a_hand_written_key(source):
    assert hand_written_keys(source)


@pytest.mark.parametrize(
    "source",
    [
        'grant_type = "refresh_token"',
        'kind = "code"',
        'print(f"bastion: {problem}")',
        'scope = "notes:admin"',
        'subject = f"dev:{name}"',
        "key = keys.grant(grant_id)",
    ],
)
def test_the_scan_leaves_other_strings_alone(source):
    assert hand_written_keys(source) == []


def test_no_module_but_store_keys_writes_a_storage_key():
    builder = SRC / "store" / "keys.py"
    modules = sorted(SRC.rglob("*.py"))
    assert builder in modules and len(modules) > 50  # the scan really walks the package
    offenders = {
        str(path.relative_to(SRC)): found
        for path in modules
        if path != builder and (found := hand_written_keys(path.read_text()))
    }
    assert offenders == {}, "build storage keys with bastion.store.keys, not by hand"


def test_store_keys_imports_nothing_of_bastions():
    tree = ast.parse((SRC / "store" / "keys.py").read_text())
    imported = [
        node.module or "" if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    ]
    relative = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert not relative and not [name for name in imported if name.startswith("bastion")]


# --- the two descriptions of the layouts agree -----------------------------------------------------------------
def _layouts_in_docs() -> set[str]:
    return set(re.findall(r"^\| `([a-z]+:[^`]*)` \|", DOCS.read_text(), re.MULTILINE))


def _layouts_in_docstring() -> set[str]:
    lines = (keys.__doc__ or "").splitlines()
    return {re.split(r"\s{2,}", line.strip())[0] for line in lines if line.startswith("  ") and ":" in line}


def test_docs_storage_and_keys_py_list_the_same_layouts():
    documented = _layouts_in_docstring()
    assert documented == _layouts_in_docs()
    assert {layout.split(":")[0] for layout in documented} == set(keys.KINDS)
    assert "store/keys.py" in DOCS.read_text() and "docs/storage.md" in (keys.__doc__ or "")
