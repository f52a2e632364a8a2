"""App.asgi() runs the start-up checks `bastion serve` runs, so an ASGI server of your own cannot start what
`serve` refuses (tests/e2e/test_cli.py runs one under a real uvicorn)."""

import pytest

from bastion import App
from bastion.settings import Settings, SettingsError


def refusal(settings: Settings) -> str:
    with pytest.raises(SettingsError) as refused:
        settings.check()
    return str(refused.value)


def test_an_unauthenticated_public_binding_is_refused_with_serves_message():
    settings = Settings(host="0.0.0.0")
    with pytest.raises(SettingsError) as refused:
        App("x").asgi(settings)
    assert str(refused.value) == refusal(settings)
    assert "would serve MCP without authentication beyond this machine" in str(refused.value)


@pytest.mark.parametrize(
    "options",
    [
        {"authorization_server": {"enabled": True}},  # no sign-in method
        {"authorization_server": {"enabled": True, "dev_login": True}, "host": "10.0.0.8", "allowed_hosts": ["a"]},
        {"worker": {"secret_env": "BASTION_TEST_UNSET_WORKER_SECRET"}},
        {"worker": {"only": True}},
    ],
)
def test_every_refused_combination_builds_nothing(tmp_path, monkeypatch, options):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BASTION_TEST_UNSET_WORKER_SECRET", raising=False)
    settings = Settings.load(env={}, store={"path": str(tmp_path / "bastion.db")}, **options)
    with pytest.raises(SettingsError) as refused:
        App("x").asgi(settings)
    assert str(refused.value) == refusal(settings)
    assert list(tmp_path.iterdir()) == []  # refused before opening anything: no store file


def test_settings_from_the_environment_are_checked_too(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no bastion.toml here
    monkeypatch.setenv("BASTION_HOST", "0.0.0.0")
    with pytest.raises(SettingsError, match="--insecure-no-auth"):
        App("x").asgi()


def test_accepted_settings_still_build(tmp_path):
    App("x").asgi(Settings())
    App("x").asgi(Settings(host="0.0.0.0", insecure_no_auth=True, allowed_hosts=["mcp.example.com"]))
