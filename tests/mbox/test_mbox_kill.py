"""SIGKILL in the middle of appends: the next delivery leaves only whole messages.

First a deterministic case: a deliverer is stopped (SIGSTOP) the moment its append
has begun and is seen to be partial, then killed; the mbox is broken until the next
delivery rolls the append back. Then random kills among concurrent deliverers:
whatever happens, after one more delivery the mbox holds whole messages only, every
message a deliverer reported as saved is there exactly once, and no lock is left.
"""

import os
import random
import signal
import time

import pytest

from mailslot.storage.mbox_format import MboxEncoder, from_line
from mailslot.storage.mbox_journal import parse_record
from tests.mbox.deliverer import make_message
from tests.mbox.mboxtest import check_structure, journal_active, parse_results, verify_mbox

BIG = 24 * 1024 * 1024


def encoded_length(tag, index, size):
    encoder = MboxEncoder()
    body = encoder.feed(make_message(tag, index, size)) + encoder.finish()
    return len(from_line(f"sender{index}@example.org")) + len(body) + 1


def stop(proc):
    """SIGSTOP proc and wait until it is stopped; False if it ended first."""
    if proc.poll() is not None:
        return False
    os.kill(proc.pid, signal.SIGSTOP)
    _, status = os.waitpid(proc.pid, os.WUNTRACED)
    if os.WIFSTOPPED(status):
        return True
    proc.returncode = os.waitstatus_to_exitcode(status)
    return False


def catch_partial(proc, inbox, journal):
    """proc is stopped with its journal record written: let it run until its append
    has begun, stop it again; True if it is now stopped in the middle of it."""
    with open(journal, "rb") as f:
        record = parse_record(f.read())
    if record is None:
        return False
    until = time.monotonic() + 0.2
    os.kill(proc.pid, signal.SIGCONT)
    while os.path.getsize(inbox) <= record.length and time.monotonic() < until:
        time.sleep(0.0002)
    if not stop(proc):
        return False
    size = os.path.getsize(inbox)
    if record.end is not None:
        return record.length < size < record.end
    # A streamed (large) append records no total: cut short, the mbox does not
    # end with a message's blank line.
    with open(inbox, "rb") as f:
        f.seek(size - 2)
        return record.length < size and f.read(2) != b"\n\n"


def test_sigkill_mid_append_is_rolled_back_by_the_next_delivery(mbox_home):
    code, results, err = mbox_home.run(mbox_home.plan(count=3, tag="before"))
    assert code == 0 and len(results) == 3, err
    inbox = mbox_home.path("mail", "inbox")
    journal = mbox_home.path("mail", ".imap", "INBOX", "mailslot-journal")
    killed = None
    for attempt in range(15):
        base = os.path.getsize(inbox)
        total = encoded_length(f"big{attempt}", 0, BIG)
        proc = mbox_home.spawn(mbox_home.plan(count=1, size=BIG, tag=f"big{attempt}"))
        while proc.poll() is None and os.path.getsize(inbox) <= base:
            time.sleep(0.0002)
        if not stop(proc):
            continue
        size = os.path.getsize(inbox)
        if base < size < base + total and journal_active(journal):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(30)
            killed = (attempt, base, size)
            break
        os.kill(proc.pid, signal.SIGCONT)       # too late: let it finish, try again
        proc.communicate(timeout=120)
    assert killed, "never caught an append in the middle"
    attempt, base, size = killed
    with open(inbox, "rb") as f:
        data = f.read()
    assert len(data) == size
    with pytest.raises(AssertionError):
        check_structure(data)                   # broken until the next delivery
    assert os.path.exists(inbox + ".lock")      # SIGKILL cannot be caught: its dotlock stays
    code, results, err = mbox_home.run(mbox_home.plan(count=1, tag="after"))
    assert code == 0, err
    assert any("rolled back an interrupted delivery" in w for w in results[0]["warnings"])
    assert results[0]["offset"] == base
    found = verify_mbox(inbox)
    assert f"big{attempt}-0" not in found and "after-0" in found
    assert not os.path.exists(inbox + ".lock") and not journal_active(journal)


def test_random_sigkills_among_concurrent_deliverers_leave_whole_messages(mbox_home):
    rng = random.Random(20260322)
    inbox = mbox_home.path("mail", "inbox")
    journal = mbox_home.path("mail", ".imap", "INBOX", "mailslot-journal")
    confirmed, running, serial, partial_kills = set(), [], 0, 0
    deadline = time.monotonic() + 6
    kills = 0

    def start():
        nonlocal serial
        serial += 1
        size = rng.choice([2_000, 400_000, 3_000_000, 6_000_000])
        return mbox_home.spawn(mbox_home.plan(count=4, size=size, tag=f"w{serial}"))

    def collect(proc):
        out, _err = proc.communicate(timeout=120)
        confirmed.update(r["id"] for r in parse_results(out) if "offset" in r)

    def appender():
        """The deliverer appending now, stopped: its pid is in the dotlock and the
        journal is active; None if none was caught in time."""
        until = time.monotonic() + 0.5
        while time.monotonic() < until:
            try:
                pid = int(open(inbox + ".lock").read().split(":")[0])
            except (OSError, ValueError):
                pid = None
            if pid and journal_active(journal):
                for proc in running:
                    if proc.pid == pid and stop(proc):      # setpriv execs: same pid
                        return proc
            time.sleep(0.0005)
        return None

    running = [start() for _ in range(4)]
    hard_stop = deadline + 30
    # Random kills for a while; then, if no kill has yet landed inside an append,
    # aimed kills only until one has.
    while time.monotonic() < deadline or (partial_kills == 0 and time.monotonic() < hard_stop):
        time.sleep(rng.uniform(0.01, 0.2))
        # Half the kills aim at an append in flight, half fall anywhere.
        aim = rng.random() < 0.5 or time.monotonic() >= deadline
        victim = appender() if aim else None
        if victim is not None:
            partial_kills += catch_partial(victim, inbox, journal)
        victim = victim or rng.choice(running)
        if victim.poll() is None:
            victim.kill()
            kills += 1
        collect(victim)
        running.remove(victim)
        running.append(start())
        for proc in list(running):
            if proc.poll() is not None:
                collect(proc)
                running.remove(proc)
                running.append(start())
    for proc in running:
        collect(proc)
    assert kills >= 5 and partial_kills >= 1, (kills, partial_kills)
    code, results, err = mbox_home.run(mbox_home.plan(count=1, tag="final"))
    assert code == 0, err
    found = verify_mbox(inbox)                  # whole messages only, none twice
    assert confirmed <= set(found), sorted(confirmed - set(found))[:5]
    assert not os.path.exists(inbox + ".lock")
    assert not journal_active(mbox_home.path("mail", ".imap", "INBOX", "mailslot-journal"))
