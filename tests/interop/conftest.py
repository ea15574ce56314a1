"""Fixtures for the Dovecot interop tests: a private Dovecot per test (tests/dovecot_env.py)."""

import pytest

from tests.dovecot_env import DovecotEnv, dovecot_missing


@pytest.fixture
def dovecot_factory():
    """Call with DovecotEnv.create()'s keywords; every env made is removed afterwards."""
    reason = dovecot_missing()
    if reason:
        pytest.skip(reason)
    made = []

    def make(**kwargs):
        env = DovecotEnv.create(**kwargs)
        made.append(env)
        return env

    yield make
    for env in made:
        env.cleanup()
