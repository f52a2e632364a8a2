import pytest

from tests.jwt_issuer import local_issuer


@pytest.fixture(scope="module")
def issuer():
    """tests/jwt_issuer.py's local issuer, one per test module."""
    with local_issuer() as running:
        yield running
