import pytest

from bastion.settings import Settings, SettingsError


def test_defaults_are_safe():
    s = Settings.load(env={})
    assert s.host == "127.0.0.1" and s.port == 8000 and s.path == "/mcp"
    assert s.binds_loopback and not s.insecure_no_auth
    s.check()


def test_file_then_env_then_overrides(tmp_path):
    config = tmp_path / "bastion.toml"
    config.write_text('port = 9000\nallowed_origins = ["https://a.example"]\n')
    s = Settings.load(config, env={"BASTION_PORT": "9100", "BASTION_ALLOWED_HOSTS": "a.example, b.example"})
    assert s.port == 9100 and s.allowed_hosts == ["a.example", "b.example"]
    assert s.allowed_origins == ["https://a.example"]
    assert Settings.load(config, env={}, port=9200).port == 9200


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"BASTION_PORT": "eighty"}, "port"),
        ({"BASTION_PORT": "70000"}, "port"),
        ({"BASTION_PROT": "8000"}, "BASTION_PROT"),
        ({"BASTION_PATH": "mcp"}, "path"),
        ({"BASTION_MAX_BODY_BYTES": "10"}, "max_body_bytes"),
        ({"BASTION_STATE_SECRET": "short"}, "state_secret"),
        ({"BASTION_LOG_LEVEL": "chatty"}, "log_level"),
    ],
)
def test_bad_values_say_what_to_change(env, needle):
    with pytest.raises(SettingsError) as caught:
        Settings.load(env=env)
    assert needle in str(caught.value)


def test_bad_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("port = = 1")
    with pytest.raises(SettingsError, match="not valid TOML"):
        Settings.load(bad, env={})
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("hots = '0.0.0.0'")
    with pytest.raises(SettingsError, match="hots: not a setting"):
        Settings.load(unknown, env={})
    with pytest.raises(SettingsError, match="does not exist"):
        Settings.load(tmp_path / "missing.toml", env={})


def test_unauthenticated_public_binding_is_refused_with_a_reason():
    with pytest.raises(SettingsError, match="--insecure-no-auth"):
        Settings.load(env={}, host="0.0.0.0", allowed_hosts=["mcp.example.com"]).check()
    with pytest.raises(SettingsError, match="allowed_hosts"):
        Settings.load(env={}, host="0.0.0.0", insecure_no_auth=True).check()
    Settings.load(env={}, host="0.0.0.0", insecure_no_auth=True, allowed_hosts=["mcp.example.com"]).check()
    Settings.load(env={}, host="::1").check()


def test_every_setting_is_documented():
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "configuration.md").read_text()
    missing = [name for name, *_ in Settings.describe() if f"`{name}`" not in doc]
    assert not missing, f"docs/configuration.md does not describe: {missing}"


def test_sections_from_toml_and_env(tmp_path):
    config = tmp_path / "bastion.toml"
    config.write_text("[authorization_server]\nenabled = true\nscopes = ['notes:read']\n[store]\nbackend = 'memory'\n")
    s = Settings.load(config, env={"BASTION_AUTHORIZATION_SERVER__ACCESS_TOKEN_SECONDS": "600"})
    assert s.authorization_server.enabled and s.authorization_server.scopes == ["notes:read"]
    assert s.authorization_server.access_token_seconds == 600 and s.store.backend == "memory"
    with pytest.raises(SettingsError, match="BASTION_AUTHORIZATION_SERVER__NOPE"):
        Settings.load(env={"BASTION_AUTHORIZATION_SERVER__NOPE": "1"})
    with pytest.raises(SettingsError, match="BASTION_STORE"):
        Settings.load(env={"BASTION_STORE": "x"})


def test_authorization_server_combinations(monkeypatch):
    # With authentication on, a public binding is allowed, but needs https public_url and no dev login.
    monkeypatch.setenv("CORP", "s3cret")
    corp = {
        "enabled": True,
        "upstream": [{"name": "corp", "kind": "github", "client_id": "x", "client_secret_env": "CORP"}],
    }
    with pytest.raises(SettingsError, match="public_url"):
        Settings.load(env={}, host="0.0.0.0", authorization_server=corp).check()
    Settings.load(env={}, host="0.0.0.0", public_url="https://mcp.example.com", authorization_server=corp).check()
    with pytest.raises(SettingsError, match="dev_login"):
        Settings.load(
            env={},
            host="0.0.0.0",
            public_url="https://mcp.example.com",
            authorization_server={"enabled": True, "dev_login": True},
        ).check()
    with pytest.raises(SettingsError, match="https"):
        Settings.load(env={}, public_url="http://mcp.example.com")
    with pytest.raises(SettingsError, match="public_url"):
        Settings.load(env={}, public_url="https://mcp.example.com/?x=1")


def test_an_authorization_server_without_a_sign_in_method_is_refused(monkeypatch):
    # It would start, publish metadata and register clients, and then fail every single sign-in.
    for host, public_url in [("127.0.0.1", None), ("0.0.0.0", "https://mcp.example.com")]:
        with pytest.raises(SettingsError) as refused:
            Settings.load(env={}, host=host, public_url=public_url, authorization_server={"enabled": True}).check()
        assert str(refused.value) == (
            "authorization_server.enabled has no sign-in method, so every sign-in would fail: add an identity "
            "provider ([[authorization_server.upstream]], see docs/authorization.md), or dev_login = true for "
            "local development"
        )
    Settings.load(env={}, authorization_server={"enabled": True, "dev_login": True}).check()
    monkeypatch.setenv("CORP", "s3cret")
    upstream = [{"name": "corp", "issuer": "https://login.example.com", "client_id": "x", "client_secret_env": "CORP"}]
    Settings.load(env={}, authorization_server={"enabled": True, "upstream": upstream}).check()
    Settings.load(env={}, authorization_server={"enabled": False}).check()  # off: nothing to sign in to


KEYS = {
    "state_secret": ("BASTION_STATE_SECRET", "state_secret (BASTION_STATE_SECRET)"),
    "authorization_server.cookie_secret": (
        "BASTION_AUTHORIZATION_SERVER__COOKIE_SECRET",
        "authorization_server.cookie_secret (BASTION_AUTHORIZATION_SERVER__COOKIE_SECRET)",
    ),
}


@pytest.mark.parametrize("variable, label", KEYS.values(), ids=KEYS.keys())
def test_signing_keys_are_held_to_the_worker_secret_rule(variable, label):
    import secrets

    env = {"BASTION_AUTHORIZATION_SERVER__DEV_LOGIN": "true", "BASTION_AUTHORIZATION_SERVER__ENABLED": "true"}
    for weak, reason in [
        ("0123456789abcdefghijklmnopqrstuvwxyz", "follows a sequence"),
        ("password-password-password-password", "different characters"),
        ("MondaySummerOrangeDragonPrincessFootball", "common words"),
    ]:
        settings = Settings.load(env={**env, variable: weak})
        with pytest.raises(SettingsError) as refused:
            settings.check()
        [line] = str(refused.value).splitlines()
        assert line.startswith(f"{label} ") and reason in line and "token_urlsafe(32)" in line
        assert weak not in line
    Settings.load(env={**env, variable: secrets.token_urlsafe(32)}).check()


def test_upstream_providers(monkeypatch):
    from bastion.settings import UpstreamSettings

    google = UpstreamSettings(name="google", kind="google", client_id="x", client_secret_env="G")
    assert google.issuer_url() == "https://accounts.google.com" and google.button_label() == "Google"
    github = UpstreamSettings(name="gh", kind="github", client_id="x")
    assert github.issuer_url() == "https://github.com" and github.requested_scopes() == ["read:user", "user:email"]
    with pytest.raises(ValueError):
        UpstreamSettings(name="corp", issuer="http://login.example.com", client_id="x")  # plain http off loopback
    with pytest.raises(ValueError):
        UpstreamSettings(name="bad name", issuer="https://login.example.com", client_id="x")
    base = {"enabled": True, "dev_login": True}
    monkeypatch.setenv("CORP", "s3cret")
    for upstream, needle in [
        ([{"name": "corp", "client_id": "x", "client_secret_env": "CORP"}], "needs issuer"),
        ([{"name": "corp", "issuer": "https://a.example", "client_id": "x"}], "no client secret"),
        ([{"name": "dev", "kind": "github", "client_id": "x", "client_secret_env": "CORP"}], "own name"),
        ([{"name": "a", "kind": "github", "client_id": "x", "client_secret_env": "CORP"}] * 2, "own name"),
    ]:
        with pytest.raises(SettingsError, match=needle):
            Settings.load(env={}, authorization_server={**base, "upstream": upstream}).check()


def test_external_issuers(monkeypatch):
    corp = {"name": "corp", "issuer": "https://corp.okta.com/oauth2/default", "preset": "okta"}
    auth0 = Settings.load(env={}, resource={"issuers": [{"name": "a0", "issuer": "https://t.auth0.com/"}]})
    assert auth0.resource.issuers[0].issuer == "https://t.auth0.com/"  # iss is exact: the slash stays
    public = Settings.load(env={}, host="0.0.0.0", public_url="https://mcp.example.com", resource={"issuers": [corp]})
    public.check()  # external issuers alone count as authentication
    with pytest.raises(SettingsError, match="public_url"):
        Settings.load(env={}, host="0.0.0.0", allowed_hosts=["mcp.example.com"], resource={"issuers": [corp]}).check()
    for entry, needle in [
        ({**corp, "issuer": "http://corp.example.com"}, "https"),
        ({**corp, "algorithms": ["RS256", "HS256"]}, "algorithms"),
        ({**corp, "algorithms": ["none"]}, "algorithms"),
        ({**corp, "preset": "cognito"}, "preset"),
        ({**corp, "name": "two words"}, "name"),
    ]:
        with pytest.raises(SettingsError, match=needle):
            Settings.load(env={}, resource={"issuers": [entry]})
    monkeypatch.setenv("CORP", "s3cret")
    upstream = [{"name": "corp", "issuer": "https://login.example.com", "client_id": "x", "client_secret_env": "CORP"}]
    for options, needle in [
        ({"resource": {"issuers": [corp, corp]}}, "own name"),
        ({"resource": {"issuers": [{**corp, "name": "dev"}]}}, "own name"),
        (
            {"resource": {"issuers": [corp]}, "authorization_server": {"enabled": True, "upstream": upstream}},
            "own name",
        ),
        ({"resource": {"issuers": [{**corp, "introspection_client_id": "rs"}]}}, "introspection"),
        ({"resource": {"issuers": [{**corp, "introspection_client_secret_env": "CORP"}]}}, "introspection"),
    ]:
        with pytest.raises(SettingsError, match=needle):
            Settings.load(env={}, **options).check()


def test_lists_of_tables_from_the_environment_are_json():
    env = {"BASTION_RESOURCE__ISSUERS": '[{"name": "corp", "issuer": "https://corp.example/"}]'}
    assert Settings.load(env=env).resource.issuers[0].issuer == "https://corp.example/"
    with pytest.raises(SettingsError, match="BASTION_RESOURCE__ISSUERS must be a JSON list"):
        Settings.load(env={"BASTION_RESOURCE__ISSUERS": "https://corp.example"})
    with pytest.raises(SettingsError, match=r"resource\.issuers\.0\.issuer"):
        Settings.load(env={"BASTION_RESOURCE__ISSUERS": '[{"name": "corp", "issuer": "http://corp.example"}]'})


def shared_store(backend: str, **store: object) -> Settings:
    """A network store with both shared signing keys set (strong, random), so only [store] is in question."""
    import secrets

    return Settings.load(
        env={},
        state_secret=secrets.token_urlsafe(32),
        authorization_server={"enabled": True, "dev_login": True, "cookie_secret": secrets.token_urlsafe(32)},
        store={"backend": backend, **store},
    )


def refusal(settings: Settings) -> list[str]:
    with pytest.raises(SettingsError) as refused:
        settings.check()
    return str(refused.value).splitlines()


@pytest.mark.parametrize(
    "backend, url", [("postgres", "postgresql://db.internal/bastion"), ("redis", "rediss://cache.internal:6380/0")]
)
def test_a_network_store_url_comes_from_the_variable_named_by_url_env(monkeypatch, backend, url):
    monkeypatch.setenv("STORE_URL", url.replace("://", "://bastion:pa55word@"))
    settings = shared_store(backend, url_env="STORE_URL")
    settings.check()  # a password is welcome in the environment
    assert settings.store.cluster is None  # unset: the Redis backend asks the server whether it is a cluster
    assert settings.store.connection_url() == url.replace("://", "://bastion:pa55word@")
    assert settings.store.shared
    # The same, written in the file: without a password it is accepted as it is.
    assert shared_store(backend, url=url).store.connection_url() == url
    shared_store(backend, url=url).check()


@pytest.mark.parametrize(
    "store, needle",
    [
        ({"backend": "postgres"}, "backend = 'postgres' needs store.url_env"),
        ({"backend": "redis"}, "backend = 'redis' needs store.url_env"),
        ({"backend": "redis", "url_env": "NOT_SET_ANYWHERE"}, "store.url_env names NOT_SET_ANYWHERE, which is not set"),
        (
            {"backend": "postgres", "url": "redis://cache/0"},
            "store.url starts with redis://, which is not a postgres URL",
        ),
        ({"backend": "redis", "url": "postgresql://db/b"}, "which is not a redis URL: use redis:// or rediss://"),
        ({"backend": "redis", "url": "cache.internal:6379"}, "not a redis URL"),
        ({"backend": "postgres", "url": "postgresql://bastion:hunter2@db/b"}, "store.url carries a password"),
        ({"backend": "postgres", "url": "postgresql://db/b?password=hunter2"}, "store.url carries a password"),
        ({"backend": "redis", "url": "redis://:hunter2@cache/0"}, "store.url carries a password"),
        ({"backend": "postgres", "url": "postgresql://db/b", "url_env": "X"}, "both set: keep one"),
        (
            {"backend": "postgres", "url": "postgresql://db/b", "cluster": True},
            "store.cluster is for backend = 'redis'",
        ),
        ({"backend": "sqlite", "url": "postgresql://db/b"}, "store.url and store.url_env are for postgres and redis"),
        ({"backend": "memory", "url_env": "X"}, "not memory: remove them"),
        ({"backend": "sqlite", "cluster": True}, "store.cluster is for backend"),
        ({"backend": "memory", "cluster": False}, "store.cluster is for backend"),
    ],
)
def test_a_store_that_cannot_be_reached_as_written_is_refused_naming_the_setting(store, needle):
    lines = refusal(shared_store(**store))
    assert any(needle in line for line in lines), lines
    assert not any("hunter2" in line for line in lines)  # the refusal never repeats the password


def test_the_url_from_the_environment_is_checked_too(monkeypatch):
    monkeypatch.setenv("STORE_URL", "http://db.internal/bastion")
    [line] = refusal(shared_store("postgres", url_env="STORE_URL"))
    assert line == (
        "the URL in STORE_URL starts with http://, which is not a postgres URL: use postgresql:// or postgres://"
    )


@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_a_shared_store_needs_both_signing_keys_and_says_why(backend):
    import secrets

    base = {"store": {"backend": backend, "url": f"{'postgresql' if backend == 'postgres' else 'redis'}://h/0"}}
    auth = {"enabled": True, "dev_login": True}
    lines = refusal(Settings.load(env={}, authorization_server=auth, **base))
    assert len(lines) == 2
    assert lines[0].startswith(f"backend = {backend!r} is shared by every instance, so state_secret must be set")
    assert "one instance refuses what another issued" in lines[0] and "token_urlsafe(32)" in lines[0]
    assert lines[1].startswith(f"backend = {backend!r} is shared by every instance, so authorization_server.cookie")
    # One key is not enough: the other is still named.
    [line] = refusal(Settings.load(env={}, state_secret=secrets.token_urlsafe(32), authorization_server=auth, **base))
    assert "authorization_server.cookie_secret must be set" in line
    # SQLite and memory are one instance's: a random key per process is right there.
    Settings.load(env={}, authorization_server=auth).check()


def test_store_settings_from_the_environment(monkeypatch):
    import secrets

    monkeypatch.setenv("DATABASE_URL", "postgres://bastion:pw@db/bastion")
    env = {
        "BASTION_STORE__BACKEND": "postgres",
        "BASTION_STORE__URL_ENV": "DATABASE_URL",
        "BASTION_STATE_SECRET": secrets.token_urlsafe(32),
        "BASTION_AUTHORIZATION_SERVER__COOKIE_SECRET": secrets.token_urlsafe(32),
    }
    settings = Settings.load(env=env)
    settings.check()
    assert settings.store.connection_url() == "postgres://bastion:pw@db/bastion"
    written = Settings.load(env={"BASTION_STORE__BACKEND": "redis", "BASTION_STORE__URL": "redis://cache/0"})
    assert "cache" not in repr(written.store)  # a URL written in settings is kept as a secret: never printed
    with pytest.raises(SettingsError, match=r"store\.backend"):
        Settings.load(env={"BASTION_STORE__BACKEND": "mysql"})


def test_trusted_proxies_are_addresses_or_networks():
    assert Settings.load(env={}).trusted_proxies == []  # nobody, unless configured
    settings = Settings.load(env={"BASTION_TRUSTED_PROXIES": "127.0.0.1, 10.0.0.0/24, ::1"})
    assert settings.trusted_proxies == ["127.0.0.1", "10.0.0.0/24", "::1"]
    for bad in ["*", "proxy.internal", "10.0.0.0/33", ""]:
        with pytest.raises(SettingsError, match="trusted_proxies") as refused:
            Settings.load(env={}, trusted_proxies=[bad])
        assert "list the proxies' addresses" in str(refused.value)


def test_a_secret_that_cannot_be_read_is_named_with_the_fix(tmp_path, monkeypatch):
    monkeypatch.delenv("BASTION_TEST_UNSET_SECRET", raising=False)
    empty = tmp_path / "empty"
    empty.write_text("\n")
    base = {"name": "corp", "issuer": "https://corp.example", "client_id": "c"}
    cases = [
        ({"client_secret_env": "BASTION_TEST_UNSET_SECRET"}, "the environment variable BASTION_TEST_UNSET_SECRET"),
        ({"client_secret_file": str(tmp_path / "absent")}, "cannot read client_secret_file"),
        ({"client_secret_file": str(empty)}, "is empty: put the secret in it"),
        ({}, "has no client secret: set client_secret_env"),
    ]
    for secret, expected in cases:
        settings = Settings.load(env={}, authorization_server={"enabled": True, "upstream": [{**base, **secret}]})
        with pytest.raises(SettingsError) as raised:
            settings.check()
        [line] = [line for line in str(raised.value).splitlines() if "upstream 'corp'" in line]
        assert expected in line, line


def test_a_bind_address_from_a_forgotten_variable_is_said():
    with pytest.raises(SettingsError) as raised:
        Settings.load(env={"BASTION_HOST": "0.0.0.0"}).check()
    assert "host = '0.0.0.0' (from BASTION_HOST) would serve MCP" in str(raised.value)
    assert Settings.load(env={"BASTION_PORT": "9001"}).where("port") == " (from BASTION_PORT)"
    # Given on the command line (an override), it is the user's own choice: nothing to point out.
    assert Settings.load(env={"BASTION_HOST": "0.0.0.0"}, host="127.0.0.1").where("host") == ""
    assert Settings.load(env={}).where("host") == ""
