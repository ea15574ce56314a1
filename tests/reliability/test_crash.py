"""The crash harness, bounded (tests/reliability/crash.py; `make stress` runs 1000
trials per configuration): SIGKILL at random points of real deliveries, Maildir and
mbox, with and without Sieve, through the pipe engine and through the fast path
(the front, its worker or mailslot-handoffd killed); nothing acknowledged lost, nothing partial visible,
the index files, the duplicate database and Dovecot all agree after every trial."""

import os

import pytest

from tests.dovecot_env import dovecot_missing
from tests.reliability import crash
from tests.support import needs_root

pytestmark = needs_root

TRIALS = int(os.environ.get("MAILSLOT_CRASH_TRIALS", "40"))


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
@pytest.mark.parametrize("sieve", [False, True], ids=["plain", "sieve"])
def test_sigkill_at_random_points_loses_nothing(fmt, sieve):
    reason = dovecot_missing()
    if reason:
        pytest.skip(reason)
    seed = int(os.environ.get("MAILSLOT_CRASH_SEED", "21"))
    # raises crash.Failure on any fault; runs more trials while too few kills landed
    # inside a delivery (the kills must really land inside deliveries, not only
    # after them)
    summary = crash.run(fmt, sieve, TRIALS, seed, min_mid_delivery=TRIALS // 4)
    assert summary["acknowledged"] == summary["trials"] >= TRIALS
    assert summary["lost"] == summary["duplicated"] == summary["partial_visible"] == 0
    assert summary["killed_mid_delivery"] >= TRIALS // 4, summary


@pytest.mark.parametrize("fmt", ["maildir", "mbox"])
@pytest.mark.parametrize("sieve", [False, True], ids=["plain", "sieve"])
def test_sigkill_of_the_fast_path_loses_nothing(fmt, sieve):
    """The fast path (issue 18): SIGKILL the C front, the worker delivering, or
    mailslot-handoffd itself at random points; the same checks as the pipe."""
    reason = dovecot_missing()
    if reason:
        pytest.skip(reason)
    seed = int(os.environ.get("MAILSLOT_CRASH_SEED", "21"))
    summary = crash.run(fmt, sieve, TRIALS, seed, path="fast",
                        min_mid_delivery=TRIALS // 8)
    assert summary["acknowledged"] == summary["trials"] >= TRIALS
    assert summary["lost"] == summary["duplicated"] == summary["partial_visible"] == 0
    assert summary["killed_mid_delivery"] >= TRIALS // 8, summary
    # Each of the three was killed, and a killed worker never left a 0 behind.
    assert summary["killed_front"] and summary["killed_worker"] and \
        summary["killed_server"], summary
    assert summary["front_75_after_kill"] >= 1, summary
