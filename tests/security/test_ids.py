"""Ids an operator types (client ids, grant ids) never start with '-', which `bastion admin` would read as an
option: a CI run drew a client id '-98B2…' and `bastion admin clients delete <id>` refused it."""

from bastion.security.crypto import new_id


def test_drawn_ids_never_start_with_a_dash_and_keep_their_length():
    # One plain draw in 64 starts with '-': 2000 draws would hold about 31 of them.
    drawn = [new_id(16) for _ in range(2000)]
    assert not [i for i in drawn if i.startswith("-")]
    assert {len(i) for i in drawn} == {22} and len(set(drawn)) == 2000
    assert any(i.startswith("_") for i in drawn)  # only '-' is redrawn
