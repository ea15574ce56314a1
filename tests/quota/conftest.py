import pytest

from tests.dovecot_env import dovecot_missing
from tests.quota.qenv import QuotaEnv


@pytest.fixture
def quota_env():
    """quota_env(rules=..., userdb_fields=..., settings=...) -> a QuotaEnv, cleaned up."""
    reason = dovecot_missing()
    if reason:
        pytest.skip(reason)
    made = []

    def make(**kw):
        q = QuotaEnv.create(**kw)
        made.append(q)
        return q
    yield make
    for q in made:
        q.cleanup()
