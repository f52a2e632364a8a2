"""Worker secrets a person made up are refused at start-up with one line naming the variable and the fix;
generated ones pass."""

import base64
import os
import secrets
import string

import pytest

from bastion.settings import Settings, SettingsError, WorkerSettings
from bastion.settings.secret_strength import MIN_BITS, estimate, weakness

FIX = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
RANDOM_START = "6o49sEH5gpkA"  # 12 characters of secrets.token_urlsafe output


def problem_for(monkeypatch, secret: str | None) -> str | None:
    if secret is None:
        monkeypatch.delenv("WORKER_SECRET", raising=False)
    else:
        monkeypatch.setenv("WORKER_SECRET", secret)
    return WorkerSettings(secret_env="WORKER_SECRET").secret_problem()


@pytest.mark.parametrize(
    "secret, reason",
    [
        (None, "is not set"),
        ("", "is not set"),
        ("dev", "too short (3 characters, at least 32 needed)"),
        ("changeme", "too short"),
        (secrets.token_urlsafe(23), "too short (31 characters"),
        ("x" * 64, "uses only 1 different characters"),
        ("ab" * 32, "uses only 2 different characters"),
        ("changeme" * 5, "uses only 7 different characters"),
        ("passwordpassword" * 3, "uses only 7 different characters"),
        ("correct horse battery staple monkey fish", "whitespace"),
        ("\tG7rB2kQ9vX4mZ8pL1wN6cT3yH5jD0fS9aE", "whitespace"),
        (secrets.token_urlsafe(32) + "\n", "whitespace"),  # a stray newline from a file
        ("sécret-" + secrets.token_urlsafe(32), "printable ASCII"),
        ("abcdefghijklmnopqrstuvwxyz0123456789", "follows a sequence"),
        ("zyxwvutsrqponmlkjihgfedcba9876543210", "follows a sequence"),
        ("a1b2c3d4e5f6g7h8i9j0k1l2m3n4o5p6", "follows a sequence"),
        ("aabbccddeeffgghhiijjkkllmmnnoopp", "follows a sequence"),
        ("Tr0ub4dor&3Tr0ub4dor&3Tr0ub4dor&3", "repeats earlier characters"),
        ("worker-secret-" + "z" * 32, "repeats earlier characters"),
        ("1q2w3e4r5t6y7u8i9o0p1q2w3e4r5t6y7u", "repeats earlier characters"),
        ("correcthorsebatterystaplemonkeyfish", "contains common words"),
        ("CorrectHorseBatteryStaple4Monkey!", "contains common words"),
        ("my-super-secret-worker-key-for-prod", "contains common words"),
        ("P4ssw0rd-Adm1n-Secret-Worker-T0ken!", "contains common words"),
        ("thequickbrownfoxjumpsoverthelazydog", "contains common words"),
        ("qwertyuiopasdfghjklzxcvbnm1234567890", "contains common words"),
        # A random-looking start does not hide a made-up rest.
        (RANDOM_START + "abcdefghijklmnopqrstuvwxyz", "follows a sequence"),
        (RANDOM_START + "passwordpasswordpassword", "repeats earlier characters"),
        (RANDOM_START + "MondaySummerOrangeDragon", "contains common words"),
    ],
)
def test_weak_worker_secrets_get_one_line_naming_the_variable_and_the_fix(monkeypatch, secret, reason):
    problem = problem_for(monkeypatch, secret)
    assert problem is not None and reason in problem
    assert problem.startswith("the worker secret in WORKER_SECRET (named by worker.secret_env) ")
    assert problem.endswith(f"; generate one with: {FIX}") and "\n" not in problem
    if secret and len(secret) > 8:
        assert secret.strip() not in problem and secret[:12] not in problem  # never echoed
    # `serve` refuses with exactly this line (Settings.check), so does `bastion worker-token` (tests/e2e/test_cli.py).
    with pytest.raises(SettingsError) as refused:
        Settings.load(env={}, worker={"secret_env": "WORKER_SECRET"}).check()
    assert problem in str(refused.value).splitlines()


def test_the_estimate_names_every_pattern_it_used():
    strength = estimate("passwordABCDEFGHpassword" + RANDOM_START)
    assert strength.bits < MIN_BITS and strength.patterns == ("word", "copy", "step")
    problem = weakness("passwordABCDEFGHpassword" + RANDOM_START, "key")
    assert problem is not None
    assert "it contains common words, it repeats earlier characters, it follows a sequence" in problem


GENERATORS = {
    "token_urlsafe(32)": lambda: secrets.token_urlsafe(32),
    "token_hex(32)": lambda: secrets.token_hex(32),
    "openssl rand -base64 32": lambda: base64.b64encode(os.urandom(32)).decode(),
    "40 characters, letters, digits and punctuation": lambda: "".join(
        secrets.choice(string.ascii_letters + string.digits + string.punctuation) for _ in range(40)
    ),
}


@pytest.mark.parametrize("generate", GENERATORS.values(), ids=GENERATORS.keys())
def test_generated_secrets_pass(monkeypatch, generate):
    for _ in range(25):
        secret = generate()
        assert problem_for(monkeypatch, secret) is None, estimate(secret)
        Settings.load(env={}, worker={"secret_env": "WORKER_SECRET"}).check()


def test_generated_secrets_have_room_to_spare():
    # Well above the line, not just over it: an unlucky draw (a few accidental patterns) still passes.
    for _ in range(25):
        assert estimate(secrets.token_urlsafe(32)).bits > 2 * MIN_BITS - 40
        assert estimate(secrets.token_hex(32)).bits > 2 * MIN_BITS - 40


def test_long_secrets_are_judged_by_a_bounded_prefix():
    assert weakness(secrets.token_urlsafe(4000), "key") is None
    assert weakness("x" * 100_000, "key") is not None
    assert weakness(string.ascii_letters * 2000, "key") is not None


def test_no_secret_env_means_no_worker_and_no_problem(monkeypatch):
    monkeypatch.setenv("WORKER_SECRET", "dev")
    assert WorkerSettings().secret_problem() is None
    Settings.load(env={}).check()
