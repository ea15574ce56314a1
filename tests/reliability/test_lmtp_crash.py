"""mailslot-lmtpd killed (SIGKILL) or restarted (SIGTERM) under concurrent load,
Maildir and mbox (tests/reliability/lmtp_crash.py, bounded; `make stress` runs 50
clients): every recipient that got a 250 has the message, intact; nothing partial
is visible."""

import signal

import pytest

from tests.reliability import lmtp_crash
from tests.support import needs_root

pytestmark = needs_root


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["KILL", "TERM"])
def test_daemon_killed_under_load_loses_nothing(fmt, signum):
    result = lmtp_crash.run(clients=6, messages=40, kills=4, signum=signum, fmt=fmt, seed=21)
    assert result["problems"] == [] and result["lost"] == 0, result
    assert result["kills"] >= 1 and result["acknowledged"] >= 240, result
