from bastion.secrets import SecretSource


def test_declared_secrets_come_from_the_environment_then_the_env_file(tmp_path, monkeypatch):
    env_file = tmp_path / ".env"
    env_file.write_text("API_KEY=from-file\nOTHER=also-from-file\nEMPTY=\n")
    monkeypatch.setenv("TOKEN", "from-env")
    monkeypatch.setenv("API_KEY", "env-wins")
    source = SecretSource(str(env_file))
    assert source(("API_KEY", "TOKEN")) == {"API_KEY": "env-wins", "TOKEN": "from-env"}
    assert source(("OTHER",)) == {"OTHER": "also-from-file"}
    assert source(("EMPTY", "MISSING")) == {}  # unset or empty: not configured
    assert SecretSource(str(tmp_path / "absent.env"))(("OTHER",)) == {}
