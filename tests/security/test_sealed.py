import time

from bastion.security.sealed import seal, unseal

KEY = b"k" * 32


def test_round_trip():
    token = seal(KEY, "mrtr", {"a": [1, 2]}, 60)
    assert unseal(KEY, "mrtr", token) == {"a": [1, 2]}


def test_forged_altered_expired_or_repurposed_tokens_are_refused(monkeypatch):
    token = seal(KEY, "mrtr", {"a": 1}, 60)
    body, mac = token.split(".")
    assert unseal(b"x" * 32, "mrtr", token) is None  # another key
    assert unseal(KEY, "other", token) is None  # another purpose
    assert unseal(KEY, "mrtr", body[:-2] + "AA." + mac) is None  # altered body
    assert unseal(KEY, "mrtr", body + "." + mac[:-2] + "AA") is None  # altered mac
    for junk in (None, 5, "", ".", "a.b.c", "!!!.???", "x" * 300_000):
        assert unseal(KEY, "mrtr", junk) is None
    later = time.time() + 120
    monkeypatch.setattr(time, "time", lambda: later)
    assert unseal(KEY, "mrtr", token) is None
