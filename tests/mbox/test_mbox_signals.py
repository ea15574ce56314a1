"""SIGTERM, SIGINT, SIGHUP and SIGPIPE in mid-delivery: nothing half-written, no lock left.

Two moments: while the deliverer waits for the fcntl lock (the test holds it as a
writer; the deliverer keeps taking the dotlock, finding fcntl held by a writer,
letting go and pausing), and -- made certain rather than hoped for -- in the middle
of the append (the deliverer is stopped once the mbox has begun to grow, signalled,
then continued). A terminating signal must roll the mbox back, remove the dotlock,
release the fcntl lock and then end the process the way the signal ends it.
SIGPIPE is ignored by Python (a closed pipe is an EPIPE error instead), so it
cannot stop a delivery: the delivery completes.
"""

import fcntl
import os
import signal
import time

import pytest

from tests.mbox.mboxtest import journal_active, verify_mbox
from tests.mbox.test_mbox_kill import BIG, encoded_length, stop

TERMINATING = [signal.SIGTERM, signal.SIGINT, signal.SIGHUP]


def prepared(mbox_home):
    code, results, err = mbox_home.run(mbox_home.plan(count=2, tag="before"))
    assert code == 0, err
    inbox = mbox_home.path("mail", "inbox")
    return inbox, mbox_home.path("mail", ".imap", "INBOX", "mailslot-journal")


def assert_clean(inbox, journal, before):
    assert open(inbox, "rb").read() == before
    assert not os.path.exists(inbox + ".lock")
    assert not journal_active(journal)
    # The fcntl lock is free: a non-blocking write lock succeeds.
    fd = os.open(inbox, os.O_RDWR)
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)


@pytest.mark.parametrize("signum", TERMINATING + [signal.SIGPIPE],
                         ids=lambda s: signal.Signals(s).name)
def test_signal_while_waiting_for_the_lock(mbox_home, signum):
    inbox, journal = prepared(mbox_home)
    before = open(inbox, "rb").read()
    holder = os.open(inbox, os.O_RDWR)
    fcntl.lockf(holder, fcntl.LOCK_EX)       # as an IMAP server writing would
    try:
        proc = mbox_home.spawn(mbox_home.plan(count=1, tag="waiting"))
        # It takes the dotlock, finds fcntl busy, lets go, pauses, tries again...
        time.sleep(1)
        assert proc.poll() is None
        os.kill(proc.pid, signum)
        if signum == signal.SIGPIPE:
            time.sleep(0.3)
            assert proc.poll() is None       # ignored: still waiting
    finally:
        os.close(holder)
    out, err = proc.communicate(timeout=60)
    if signum == signal.SIGPIPE:
        assert proc.returncode == 0, err
        assert "waiting-0" in verify_mbox(inbox)
        assert not os.path.exists(inbox + ".lock")
        return
    assert proc.returncode == -signum, err
    assert_clean(inbox, journal, before)


@pytest.mark.parametrize("signum", TERMINATING + [signal.SIGPIPE],
                         ids=lambda s: signal.Signals(s).name)
def test_signal_in_the_middle_of_the_append(mbox_home, signum):
    inbox, journal = prepared(mbox_home)
    before = open(inbox, "rb").read()
    for attempt in range(15):
        total = encoded_length(f"big{attempt}", 0, BIG)
        proc = mbox_home.spawn(mbox_home.plan(count=1, size=BIG, tag=f"big{attempt}"))
        while proc.poll() is None and os.path.getsize(inbox) <= len(before):
            time.sleep(0.0002)
        if stop(proc) and len(before) < os.path.getsize(inbox) < len(before) + total:
            break
        os.kill(proc.pid, signal.SIGCONT)
        proc.communicate(timeout=120)
        before = open(inbox, "rb").read()
    else:
        pytest.fail("never caught an append in the middle")
    os.kill(proc.pid, signum)
    os.kill(proc.pid, signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    if signum == signal.SIGPIPE:
        assert proc.returncode == 0, err
        assert f"big{attempt}-0" in verify_mbox(inbox)
        assert not os.path.exists(inbox + ".lock") and not journal_active(journal)
        return
    assert proc.returncode == -signum, err
    assert_clean(inbox, journal, before)
