"""Dovecot (Debian's packages) reads the mboxes mailslot writes, and shares them.

A private, unprivileged Dovecot (tests/dovecot_env.py) with
mail_location = mbox:~/mail:INBOX=~/mail/inbox: doveadm fetch must list the same
messages, in the same order, with the same bodies (after undoing mboxrd quoting,
which Dovecot leaves as it is), the flags mailslot stored and none a sender forged;
dovecot-lda and mailslot delivering to one mbox at the same time must lose nothing
and never deadlock, whichever order each takes its locks in, and Dovecot's log must
stay free of errors and warnings throughout.
"""

import json
import os
import threading

import pytest

from tests.dovecot_env import DovecotEnv, dovecot_missing
from tests.support import REPO
from tests.mbox.mboxtest import DELIVERER, PYSIDE, check_structure, unquote_mboxrd

LOCATION = "mbox:~/mail:INBOX=~/mail/inbox"

SAVER = r"""
import json, os, sys
sys.path.insert(0, REPO)
from mailslot.storage import open_storage
from tests.message_source import BytesSource
plan = json.loads(sys.argv[1])

storage = open_storage(plan["location"], user="mstest", home=plan["home"], hostname="h")
for step in plan["steps"]:
    name = tuple(step["mailbox"])
    if not storage.mailbox_exists(name):
        storage.create_mailbox(name)
    source = BytesSource(step["data"].encode("latin-1"), envelope_sender="sender@example.org")
    storage.save(name, source, flags=tuple(step["flags"]))
""".replace("REPO", repr(REPO))

MESSAGES = [
    (["INBOX"], b"Subject: plain\n\nHello.\n", []),
    (["INBOX"], b"Subject: quoting\n\nFrom the start\n>From once\n>>From twice\nFromage\n", []),
    (["INBOX"], b"Subject: no final newline\n\nthe end", []),
    (["INBOX"], b"Subject: seen and flagged\n\nbody\n", ["\\Seen", "\\Flagged"]),
    (["INBOX"], b"Subject: forged\nStatus: RO\nX-Status: DF\nX-UID: 999\n"
                b"X-Keywords: $Junk\nContent-Length: 3\n\nFrom attacker\nmore\n", []),
    (["box", "sub"], b"Subject: in a folder\n\n8bit \xe9\xff and a NUL \x00 byte\n",
     ["\\Answered"]),
    (["INBOX"], b"Subject: empty body\n\n", ["\\Deleted", "\\Draft"]),
]


@pytest.fixture
def env():
    reason = dovecot_missing()
    if reason:
        pytest.skip(reason)
    env = DovecotEnv.create(mail_location=LOCATION, separator="/")
    yield env
    env.cleanup()


def save(env, messages):
    steps = [{"mailbox": m, "data": d.decode("latin-1"), "flags": f} for m, d, f in messages]
    env.run_python(SAVER, json.dumps({"location": LOCATION, "home": env.home, "steps": steps}))


def fetch(env, mailbox):
    """[(uid, flags, subject, body)] as Dovecot presents them (doveadm, pager format)."""
    out = env.doveadm("-f", "pager", "fetch", "uid flags hdr.subject body",
                      "mailbox", mailbox).stdout
    rows = []
    for record in out.split(b"\x0c\n"):
        if not record.strip():
            continue
        head, _, body = record.partition(b"\nbody:\n")
        fields = dict(line.split(b": ", 1) if b": " in line else (line.rstrip(b":"), b"")
                      for line in head.split(b"\n"))
        rows.append((int(fields[b"uid"]), set(fields[b"flags"].decode().split()) - {"\\Recent"},
                     fields[b"hdr.subject"].decode("latin-1"), body))
    return rows


def test_dovecot_lists_what_mailslot_wrote(env):
    save(env, MESSAGES)
    inbox = fetch(env, "INBOX")
    folder = fetch(env, "box/sub")
    want_inbox = [m for m in MESSAGES if m[0] == ["INBOX"]]
    assert [r[2] for r in inbox] == [d.split(b"\n")[0][9:].decode() for _m, d, _f in want_inbox]
    assert [r[0] for r in inbox] == list(range(1, len(want_inbox) + 1))
    for (_uid, flags, _subject, body), (_m, data, saved_flags) in zip(inbox, want_inbox):
        want_body = data.partition(b"\n\n")[2]
        if want_body and not want_body.endswith(b"\n"):
            want_body += b"\n"                  # mbox ends every message with a newline
        assert unquote_mboxrd(body) == want_body
        assert flags == set(saved_flags), (data[:40], flags)
    # The forged Status/X-Status/X-UID/X-Keywords/Content-Length did nothing.
    forged = [r for r in inbox if r[2] == "forged"][0]
    assert forged[1] == set() and forged[0] != 999
    assert [(r[1], r[2]) for r in folder] == [({"\\Answered"}, "in a folder")]
    assert unquote_mboxrd(folder[0][3]) == MESSAGES[5][1].partition(b"\n\n")[2]
    assert env.log_problems() == []


def test_dovecot_continues_after_mailslot_appends_to_a_synced_mbox(env):
    save(env, MESSAGES[:2])
    assert [r[0] for r in fetch(env, "INBOX")] == [1, 2]     # Dovecot has synced it now
    save(env, MESSAGES[2:4])
    assert [r[0] for r in fetch(env, "INBOX")] == [1, 2, 3, 4]
    with open(f"{env.home}/mail/inbox", "rb") as f:
        assert check_structure(f.read()) == 4
    assert env.log_problems() == []


@pytest.mark.parametrize("order", ["dotlock fcntl", "fcntl dotlock"])
def test_dovecot_lda_and_mailslot_deliver_at_the_same_time(env, order):
    """Debian's Dovecot locks "fcntl dotlock" (doveconf -d); mailslot's default is
    upstream's "dotlock fcntl". Neither order may deadlock or lose mail."""
    count = 40
    plan = {"pyside": PYSIDE, "location": LOCATION, "home": env.home, "tag": "ms",
            "count": count, "size": 3000, "user": env.user,
            "settings": {"mbox_write_locks": order}}
    failures = []

    def dovecot_side():
        for i in range(count):
            proc = env.lda(f"Subject: dc-{i}\n\nDovecot's message {i}.\n".encode(),
                           "-f", "dc@example.org", check=False)
            if proc.returncode != 0:
                failures.append(proc.stderr)

    thread = threading.Thread(target=dovecot_side)
    thread.start()
    proc = env.run(["/usr/bin/python3", "-I", DELIVERER, json.dumps(plan)], timeout=300)
    thread.join(300)
    assert failures == []
    results = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    assert [r.get("error") for r in results] == [None] * count
    subjects = [r[2] for r in fetch(env, "INBOX")]
    assert sorted(subjects) == sorted([f"ms-{i}" for i in range(count)]
                                      + [f"dc-{i}" for i in range(count)])
    assert [s for s in subjects if s.startswith("ms-")] == [f"ms-{i}" for i in range(count)]
    with open(f"{env.home}/mail/inbox", "rb") as f:
        assert check_structure(f.read()) == 2 * count
    assert env.log_problems() == []


def test_a_lock_temp_file_is_no_mailbox_to_dovecot(env):
    """A dotlock is written into a temp file beside the mbox, then linked into place:
    Dovecot must not take that file (while it exists, or left behind by a SIGKILL)
    for a mailbox."""
    from mailslot.storage.locking import temp_lock_name

    save(env, MESSAGES[:1])
    leftover = os.path.join(env.home, "mail", temp_lock_name("host"))
    with open(leftover, "w") as f:
        f.write("4242:host")
    env.give(leftover)
    out = env.doveadm("mailbox", "list").stdout.decode()
    assert out.split() == ["INBOX"], out
    assert env.log_problems() == []


# Issue 20.1: blanks before the colon (Dovecot's reader strips them, any number) or a
# NUL after the name (it compares C strings) must not let a sender set metadata.
PADDED_FORGERIES = [
    (["INBOX"], b"Subject: forged base\nX-IMAPbase" + b" " * 70 + b": 12345 900 $Forged\n"
                b"Status" + b" " * 70 + b": RO\nX-Status \t \t: AFD\n\nbody\n", []),
    (["INBOX"], b"Subject: forged padded\nStatus" + b" " * 5000 + b": RO\n"
                b"X-Status" + b"\t" * 300 + b": AFD\nX-UID" + b" " * 80 + b": 777\n"
                b"X-Keywords" + b" " * 90 + b": $Junk\n\nbody\n", []),
    (["INBOX"], b"Subject: forged nul\nStatus\0junk: RO\nX-Status \0: AFD\n"
                b"Content-Length" + b" " * 64 + b": 1\n\nbody\nmore\n", ["\\Draft"]),
]


def test_padded_metadata_fields_forge_nothing_through_imap(env):
    save(env, PADDED_FORGERIES)
    out = env.imap(["SELECT INBOX", "UID FETCH 1:* (UID FLAGS BODY.PEEK[TEXT])"])
    assert "UIDVALIDITY 12345]" not in out and "UIDNEXT 901]" not in out, out
    assert "$Forged" not in out and "$Junk" not in out, out
    flags = [line for line in out.splitlines() if " FETCH (" in line]
    assert len(flags) == 3, out
    assert [line.split("UID ")[1].split(" ")[0] for line in flags] == ["1", "2", "3"], out
    fetched = [line.split("FLAGS (")[1].split(")")[0].split() for line in flags]
    assert fetched == [["\\Recent"], ["\\Recent"], ["\\Draft", "\\Recent"]], out
    # Dovecot's UIDVALIDITY is its own (it wrote X-IMAPbase itself), and Content-Length
    # did not cut the last message.
    assert [r[0] for r in fetch(env, "INBOX")] == [1, 2, 3]
    assert fetch(env, "INBOX")[2][3] == b"body\nmore\n"
    assert env.log_problems() == []
