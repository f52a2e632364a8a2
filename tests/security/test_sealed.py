from bastion.security.sealed import seal, unseal

KEY = b"k" * 32
NOW = 1_700_000_000.0


def test_round_trip():
    token = seal(KEY, "mrtr", {"a": [1, 2]}, 60)
    assert unseal(KEY, "mrtr", token) == {"a": [1, 2]}


def test_forged_altered_expired_or_repurposed_tokens_are_refused():
    token = seal(KEY, "mrtr", {"a": 1}, 60)
    body, mac = token.split(".")
    assert unseal(b"x" * 32, "mrtr", token) is None  # another key
    assert unseal(KEY, "other", token) is None  # another purpose
    assert unseal(KEY, "mrtr", body[:-2] + "AA." + mac) is None  # altered body
    assert unseal(KEY, "mrtr", body + "." + mac[:-2] + "AA") is None  # altered mac
    for junk in (None, 5, "", ".", "a.b.c", "!!!.???", "x" * 300_000):
        assert unseal(KEY, "mrtr", junk) is None


def test_a_sealed_value_lives_exactly_its_ttl():
    token = seal(KEY, "mrtr", {"a": 1}, 60, now=NOW)
    assert unseal(KEY, "mrtr", token, now=NOW) == {"a": 1}
    assert unseal(KEY, "mrtr", token, now=NOW + 60) == {"a": 1}  # its last second
    assert unseal(KEY, "mrtr", token, now=NOW + 60.5) is None
    assert unseal(KEY, "mrtr", token, now=NOW + 86400) is None
    # Sealed earlier than now by more than its ttl: already expired when read with the real clock.
    assert unseal(KEY, "mrtr", seal(KEY, "mrtr", {"a": 1}, 60, now=NOW)) is None
