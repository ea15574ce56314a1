"""Issue 21.1: a cut mbox append is taken out even when Dovecot touched the mbox first.

A delivery killed mid-append leaves the start of a message and a journal record.
Before the fix, when Dovecot's IMAP (which writes X-IMAPbase/X-UID/Status/
Content-Length into every message, shifting all offsets) or dovecot-lda (which
appends after the cut bytes) came before mailslot's next delivery, that delivery
logged "journal record does not match the mbox ... left as it is" or "left in
place" and the truncated message stayed for good. Now the next delivery finds the
cut message wherever it went and takes it out; a whole append (possibly confirmed)
is never taken.

The cut states are made as a killed delivery makes them (the journal record, then
part of the append); one case is a real SIGKILL of a delivering process. Dovecot is
Debian's: imap (pre-authenticated), dovecot-lda, doveadm fetch.
"""

import json
import os
import signal
import time

import pytest

from mailslot.storage import mbox_heal
from mailslot.storage.mbox_format import MboxEncoder, from_line
from mailslot.storage.mbox_journal import MboxJournal, parse_record
from tests.dovecot_env import DovecotEnv, dovecot_missing
from tests.mbox.mboxtest import check_structure, journal_active
from tests.mbox.test_mbox_dovecot import fetch
from tests.support import REPO

LOCATION = "mbox:~/mail:INBOX=~/mail/inbox"

SAVER = r"""
import json, os, sys
sys.path.insert(0, REPO)
from mailslot.storage import open_storage
from tests.message_source import BytesSource
plan = json.loads(sys.argv[1])
# The real host name: Dovecot breaks a dead process's dotlock only when it names this host.
storage = open_storage(plan["location"], user="mstest", home=plan["home"],
                       hostname=os.uname().nodename)
big = plan.get("big_lines")
for data in plan["messages"] or ["Subject: big\n\n" + ("y" * 79 + "\n") * big]:
    result = storage.save(("INBOX",), BytesSource(data.encode("latin-1"),
                                                 envelope_sender="s@example.org"))
    print(json.dumps(list(result.warnings)), flush=True)
""".replace("REPO", repr(REPO))

CUT_BODY = b"x" * 70 + b"\n"


@pytest.fixture
def env():
    reason = dovecot_missing()
    if reason:
        pytest.skip(reason)
    env = DovecotEnv.create(mail_location=LOCATION, separator="/")
    yield env
    env.cleanup()


def save(env, *messages):
    """Deliver messages with mailslot as the user; the warnings of each save."""
    plan = {"location": LOCATION, "home": env.home,
            "messages": [m.decode("latin-1") for m in messages]}
    out = env.run_python(SAVER, json.dumps(plan)).stdout.decode()
    return [json.loads(line) for line in out.splitlines()]


def encoded(message, sender="cut@example.org"):
    encoder = MboxEncoder()
    return from_line(sender) + encoder.feed(message) + encoder.finish() + b"\n"


def cut_append(env, data, written, streamed=False):
    """Leave the INBOX as a delivery killed after writing `written` bytes of data."""
    inbox = os.path.join(env.home, "mail", "inbox")
    jdir = os.path.join(env.home, "mail", ".imap", "INBOX")
    dir_fd = os.open(jdir, os.O_RDONLY | os.O_DIRECTORY)
    mbox_fd = os.open(inbox, os.O_RDWR | os.O_APPEND)
    try:
        length = os.fstat(mbox_fd).st_size
        journal = MboxJournal(dir_fd, jdir, fsync=False)
        journal.begin(mbox_fd, length, length, None if streamed else len(data), data[:512])
        journal.close()
        os.write(mbox_fd, data[:written])
    finally:
        os.close(mbox_fd)
        os.close(dir_fd)
    return inbox


def touch(env, how):
    """What Dovecot does to the mbox before mailslot's next delivery."""
    for step in how.split("+"):
        if step == "imap":              # a login that syncs and sets a flag
            env.imap(["SELECT INBOX", "FETCH 1:* (FLAGS RFC822.SIZE)",
                      "STORE 1 +FLAGS (\\Seen)"])
        elif step == "expunge":         # the first message expunged: all offsets move
            env.imap(["SELECT INBOX", "STORE 1 +FLAGS (\\Deleted)", "EXPUNGE"])
        elif step == "lda":
            env.lda(b"Subject: dc\n\nDovecot's delivery.\n")
        else:
            raise ValueError(step)


def subjects(env):
    """[(subject, body)] of the INBOX as Dovecot reads it."""
    return [(subject, body.decode("latin-1")) for _uid, _flags, subject, body
            in fetch(env, "INBOX")]


def expected(how):
    rows = [("one", "body one\n"), ("two", "body two\n")]
    if "expunge" in how:
        rows = rows[1:]
    rows += [("dc", "Dovecot's delivery.\n")] * how.split("+").count("lda")
    return rows + [("three", "body three\n")]


@pytest.mark.parametrize("how", ["imap", "expunge", "lda", "imap+lda", "lda+imap",
                                 "imap+lda+lda"])
@pytest.mark.parametrize("written,streamed", [
    (12, False),        # inside the From_ line: to Dovecot, a body line of "two"
    (70, False),        # inside the header
    (1500, False),      # inside the body
    (1500, True),       # a streamed (large) append: no total recorded
])
def test_cut_append_is_taken_out_whatever_dovecot_did(env, how, written, streamed):
    save(env, b"Subject: one\n\nbody one\n", b"Subject: two\n\nbody two\n")
    data = encoded(b"Subject: cut\nTo: u@example.org\n\n" + CUT_BODY * 40)
    inbox = cut_append(env, data, written, streamed)
    touch(env, how)
    [warnings] = save(env, b"Subject: three\n\nbody three\n")
    assert any("took out an interrupted delivery" in w for w in warnings), warnings
    assert subjects(env) == [(s, b) for s, b in expected(how)]
    with open(inbox, "rb") as f:
        content = f.read()
    assert check_structure(content) == len(expected(how))
    assert b"cut@example.org" not in content and b"xxxx" not in content
    assert not journal_active(os.path.join(env.home, "mail", ".imap", "INBOX",
                                           "mailslot-journal"))
    assert not env.log_problems()


@pytest.mark.parametrize("how", ["imap", "lda", "imap+lda"])
def test_whole_append_is_kept_whatever_dovecot_did(env, how):
    """Whole but never confirmed (killed before the journal's clear): it may have
    been confirmed as far as anyone knows, so it stays."""
    save(env, b"Subject: one\n\nbody one\n", b"Subject: two\n\nbody two\n")
    body = CUT_BODY * 40
    data = encoded(b"Subject: cut\nTo: u@example.org\n\n" + body)
    cut_append(env, data, len(data))
    touch(env, how)
    [warnings] = save(env, b"Subject: three\n\nbody three\n")
    assert not any("took out" in w for w in warnings), warnings
    got = subjects(env)
    assert ("cut", body.decode()) in got and len(got) == len(expected(how)) + 1


def test_a_move_interrupted_by_a_crash_is_finished_next_time(tmp_path, monkeypatch):
    """The cut message is followed by other mail: its tail is moved down; a crash
    in the middle of that move is finished by the next delivery from the side copy."""
    from mailslot.storage import open_storage
    from tests.storage.sources import BytesSource, message
    home = str(tmp_path)
    storage = open_storage("mbox:~/mail", user="t", home=home, hostname="h")
    storage.save(("INBOX",), BytesSource(message(1)))
    inbox = os.path.join(home, "mail", "inbox")
    jdir = os.path.join(home, "mail", ".imap", "INBOX")
    data = encoded(b"Subject: cut\n\n" + CUT_BODY * 40)
    dir_fd = os.open(jdir, os.O_RDONLY | os.O_DIRECTORY)
    mbox_fd = os.open(inbox, os.O_RDWR | os.O_APPEND)
    length = os.fstat(mbox_fd).st_size
    journal = MboxJournal(dir_fd, jdir, fsync=False)
    journal.begin(mbox_fd, length, length, len(data), data[:512])
    os.write(mbox_fd, data[:900] + b"\n" + encoded(b"Subject: other\n\nafter\n", "o@x.org"))
    real_move = mbox_heal._move

    def crash(journal, mbox_fd, tail_fd, start, n):
        os.pwrite(mbox_fd, b"From half", start)        # O_APPEND: lands at the end
        raise KeyboardInterrupt("power cut")
    monkeypatch.setattr(mbox_heal, "_move", crash)
    with pytest.raises(KeyboardInterrupt):
        journal.recover(mbox_fd)
    journal.close()
    os.close(mbox_fd)
    os.close(dir_fd)
    assert os.path.exists(os.path.join(jdir, mbox_heal.TAIL_NAME))
    monkeypatch.setattr(mbox_heal, "_move", real_move)
    # The crash left the mbox longer than before and the move record: a move record
    # whose mbox size is neither the old nor the new one is refused...
    with open(inbox, "rb+") as f:
        f.truncate(os.path.getsize(inbox) - len(b"From half"))
    result = storage.save(("INBOX",), BytesSource(message(3)))
    assert any("finished taking an interrupted delivery out" in w for w in result.warnings), \
        result.warnings
    content = open(inbox, "rb").read()
    assert check_structure(content) == 3
    assert b"Subject: cut" not in content and b"Subject: other" in content
    assert not os.path.exists(os.path.join(jdir, mbox_heal.TAIL_NAME))


def test_real_sigkill_then_dovecot_then_mailslot(env):
    """A real delivery process killed mid-append (a 24 MB streamed message), then an
    IMAP login and a dovecot-lda delivery, then mailslot's next delivery."""
    save(env, b"Subject: one\n\nbody one\n", b"Subject: two\n\nbody two\n")
    inbox = os.path.join(env.home, "mail", "inbox")
    journal = os.path.join(env.home, "mail", ".imap", "INBOX", "mailslot-journal")
    plan = {"location": LOCATION, "home": env.home, "messages": [],
            "big_lines": 24 * 1024 * 1024 // 80}
    import subprocess
    caught = False
    for _attempt in range(10):
        base = os.path.getsize(inbox)
        argv = env.user_argv(["/usr/bin/python3", "-I", "-c",
                              f"import sys; sys.path.insert(0, {os.path.join(REPO, 'pyside')!r})\n"
                              + SAVER, json.dumps(plan)])
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        while proc.poll() is None and os.path.getsize(inbox) < base + 1024 * 1024:
            time.sleep(0.001)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=60)
        with open(journal, "rb") as f:
            record = parse_record(f.read())
        if proc.returncode == -signal.SIGKILL and record is not None:
            caught = True
            break
    assert caught, "never killed a delivery mid-append"
    assert os.path.getsize(inbox) > base
    touch(env, "imap+lda")
    [warnings] = save(env, b"Subject: three\n\nbody three\n")
    assert any("took out an interrupted delivery" in w for w in warnings), warnings
    assert subjects(env) == expected("imap+lda")
    assert check_structure(open(inbox, "rb").read()) == 4
