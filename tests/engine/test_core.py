"""The delivery core (deliver.py) without the pipe front: many recipients, one process.

A child runs as an unprivileged uid with no passwd entry (a vmail-style site: every
recipient of a passwd-file userdb has that uid) and calls the core the way an LMTP
server will: one message read from a pipe, then recipient.resolve() and deliver()
once per recipient. The recipients have different settings from the userdb: one
Maildir, one mbox, one with a Sieve script filing into two folders. Checked: each
copy byte for byte (the message as it came: lda_original_recipient_header is read,
never written),
the input read once, the userdb field the schema does not know kept, and that no
delivery leaves a signal handler or an interval timer behind (lock waits, the Sieve
CPU limit and mbox's signal guard install theirs per delivery), nor a file descriptor
open (the delivery log it opened is closed).
"""

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.support import REPO, free_uid, needs_root, world_tempdir

pytestmark = needs_root

MSG = (b"From: Alice <alice@example.org>\nTo: list@example.org\n"
       b"Subject: three ways\nMessage-ID: <core1@example.org>\n\n"
       + b"A line of the body.\n" * 5000)      # 95 KB: several pipe reads, one spool in memory
SIEVE = b'require ["fileinto"];\nfileinto "Lists";\nkeep;\n'

CHILD = r"""
import json, os, sys, signal
sys.path.insert(0, sys.argv[1])
plan = json.loads(sys.argv[2])
from mailslot.message import read_message
from mailslot.recipient import load_base_settings, resolve
from mailslot.deliver import DeliveryContext, deliver

WATCHED = (signal.SIGALRM, signal.SIGPROF, signal.SIGTERM, signal.SIGINT, signal.SIGHUP,
           signal.SIGPIPE)

def state():
    return [[str(signal.getsignal(s)) for s in WATCHED],
            list(signal.getitimer(signal.ITIMER_REAL)),
            list(signal.getitimer(signal.ITIMER_PROF)),
            sorted(os.listdir("/proc/self/fd"))]

r, w = os.pipe()
if os.fork() == 0:              # the MTA: writes the message into the pipe once
    os.close(r)
    data = open(plan["message"], "rb").read()
    view = memoryview(data)
    while view:
        view = view[os.write(w, view):]
    os._exit(0)
os.close(w)
base = load_base_settings(plan["conf"], [])
message = read_message(r)
before = state()
out = {"deliveries": [], "states": []}
for name in plan["recipients"]:
    rcpt = resolve(base, name)
    envelope = {"from": "alice@example.org", "to": name + "@example.org",
                "orig_to": name + "@example.org"}
    context = DeliveryContext(rcpt.settings, rcpt.user, envelope, extra=rcpt.extra)
    saved = deliver(context, message)
    out["deliveries"].append({
        "name": name, "extra": rcpt.extra,
        "saved": [[s.mailbox, s.path, s.mbox_path, s.size] for s in saved]})
    out["states"].append(state() == before)
out["source_reads"] = message.source_reads
out["base_mail_location"] = base["mail_location"]
os.wait()
print(json.dumps(out))
"""


@pytest.fixture
def site():
    """Three recipients of one uid, each with its own home, in a passwd-file."""
    uid = free_uid(4300)
    top = world_tempdir("mailslot-core-")
    homes = {}
    for name in ("maildiruser", "mboxuser", "sieveuser"):
        homes[name] = os.path.join(top, name)
        os.mkdir(homes[name], 0o700)
    with open(os.path.join(homes["sieveuser"], ".dovecot.sieve"), "wb") as f:
        f.write(SIEVE)
    users = os.path.join(top, "users")
    with open(users, "w") as f:
        f.write(f"maildiruser::{uid}:{uid}::{homes['maildiruser']}::"
                "userdb_quota_rule=*:storage=1G userdb_acl_groups=staff\n")
        f.write(f"mboxuser::{uid}:{uid}::{homes['mboxuser']}::"
                "userdb_mail=mbox:~/mail:INBOX=~/mail/inbox\n")
        f.write(f"sieveuser::{uid}:{uid}::{homes['sieveuser']}::\n")
    conf = os.path.join(top, "mailslot.yaml")
    with open(conf, "w") as f:
        f.write("mail_location: maildir:~/Maildir\n"
                "lda_original_recipient_header: X-Original-To\n"
                f"log_path: {top}/log/mailslot.log\n"
                "hostname: core.example.org\nfirst_valid_uid: 100\n"
                f"userdb:\n  - driver: passwd-file\n    args: {users}\n")
    os.mkdir(os.path.join(top, "log"))
    message = os.path.join(top, "message")
    with open(message, "wb") as f:
        f.write(MSG)
    for root, dirs, files in os.walk(top):
        for entry in dirs + files:
            os.chown(os.path.join(root, entry), uid, uid)
    yield uid, top, homes, conf, message
    shutil.rmtree(top, ignore_errors=True)


def run_child(uid, top, plan):
    argv = ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
            sys.executable, "-I", "-c", CHILD, os.path.join(REPO, "pyside"),
            json.dumps(plan)]
    proc = subprocess.run(argv, capture_output=True, timeout=120, cwd=top,
                          env={"PATH": "/usr/bin:/bin", "HOME": top})
    assert proc.returncode == 0, proc.stderr.decode()
    return json.loads(proc.stdout.decode().splitlines()[-1])


def maildir_files(root, folder=""):
    new = os.path.join(root, folder, "new")
    return [os.path.join(new, n) for n in sorted(os.listdir(new))]


def test_one_message_three_recipients_one_process(site):
    uid, top, homes, conf, message = site
    out = run_child(uid, top, {"conf": conf, "message": message,
                               "recipients": ["maildiruser", "mboxuser", "sieveuser"]})
    # The input was read to its end once, by the first copy; the others came from the
    # delivery's spool (a pipe cannot be read twice: a second read would be empty).
    assert out["source_reads"] >= 2
    by_name = {d["name"]: d for d in out["deliveries"]}
    # Each copy is the message as it came (dovecot-lda adds no line).
    def copy_for(name):
        return MSG

    # 1. Maildir, and the userdb field the settings schema does not know is kept
    # (quota_rule is a setting now: it went into the settings, and maildirsize
    # counts the copy).
    assert by_name["maildiruser"]["extra"] == {"acl_groups": "staff"}
    with open(os.path.join(homes["maildiruser"], "Maildir", "maildirsize")) as f:
        assert f.read() == f"1073741824S\n0 0\n{len(copy_for('maildiruser'))} 1\n"
    [path] = maildir_files(os.path.join(homes["maildiruser"], "Maildir"))
    assert open(path, "rb").read() == copy_for("maildiruser")
    assert by_name["maildiruser"]["saved"][0][3] == len(copy_for("maildiruser"))

    # 2. mbox (mail= from the userdb), the From_ line naming the envelope sender.
    inbox = os.path.join(homes["mboxuser"], "mail", "inbox")
    data = open(inbox, "rb").read()
    first, rest = data.split(b"\n", 1)
    assert first.startswith(b"From alice@example.org ")
    assert rest == copy_for("mboxuser") + b"\n"       # the blank line ending an mbox message
    assert not os.path.exists(os.path.join(homes["mboxuser"], "Maildir"))

    # 3. Sieve: fileinto "Lists" and keep, two copies (the second a hard link).
    maildir = os.path.join(homes["sieveuser"], "Maildir")
    [listed] = maildir_files(maildir, ".Lists")
    [kept] = maildir_files(maildir)
    assert open(listed, "rb").read() == copy_for("sieveuser")
    assert os.path.samefile(listed, kept)
    assert [s[0] for s in by_name["sieveuser"]["saved"]] == ["Lists", "INBOX"]

    # No recipient's settings leaked into the base or into the next recipient.
    assert out["base_mail_location"] == "maildir:~/Maildir"
    # Every delivery left the signal handlers, the timers and the open files as it
    # found them.
    assert out["states"] == [True, True, True]
    log = open(os.path.join(top, "log", "mailslot.log")).read()
    assert log.count("saved mail to") == 4


LOCK_HOLDER = r"""
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX)
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
"""


def test_two_deliveries_with_a_lock_wait_and_a_sieve_limit_in_one_process(site):
    """The first mbox delivery waits (SIGALRM, ITIMER_REAL) for a writer's fcntl lock;
    the Sieve delivery after it runs under its CPU limit (SIGPROF, ITIMER_PROF); then
    the same two again. Every delivery must find and leave the handlers and timers
    as they were, and every copy must arrive."""
    uid, top, homes, conf, message = site
    inbox = os.path.join(homes["mboxuser"], "mail", "inbox")
    os.makedirs(os.path.dirname(inbox))
    with open(inbox, "wb"):
        pass
    for path in (os.path.dirname(inbox), inbox):
        os.chown(path, uid, uid)
    with open(conf, "a") as f:
        f.write("mbox_write_locks: fcntl\nsieve_max_cpu_time: 5\n")
    ready = os.path.join(homes["mboxuser"], "locked")
    holder = subprocess.Popen(["setpriv", f"--reuid={uid}", f"--regid={uid}",
                               "--clear-groups", "--", sys.executable, "-I", "-c",
                               LOCK_HOLDER, inbox, ready, "0.5"])
    try:
        for _ in range(500):
            if os.path.exists(ready):
                break
            holder.poll()
            assert holder.returncode is None
            __import__("time").sleep(0.01)
        out = run_child(uid, top, {"conf": conf, "message": message,
                                   "recipients": ["mboxuser", "sieveuser",
                                                  "mboxuser", "sieveuser"]})
    finally:
        holder.wait(timeout=30)
    assert out["states"] == [True, True, True, True]
    data = open(inbox, "rb").read()
    assert data.count(b"\nFrom: Alice <alice@example.org>\n") == 2
    maildir = os.path.join(homes["sieveuser"], "Maildir")
    assert len(maildir_files(maildir, ".Lists")) == 2 and len(maildir_files(maildir)) == 2


def test_the_sieve_cpu_budget_is_the_delivering_threads_own():
    """A server delivers in several threads: CPU that other threads burn must not
    count against one delivery's sieve_max_cpu_time (the deadline the interpreter
    checks between ops is the thread's CPU clock, not the process's)."""
    import threading
    import time
    sys.path.insert(0, os.path.join(REPO, "pyside"))
    from mailslot.sieve.cpu import cpu_guard, over
    seen = {}
    armed, burnt = threading.Event(), threading.Event()

    def delivery():
        with cpu_guard(0.3) as guard:       # not the main thread: no SIGPROF, the clock
            armed.set()
            burnt.wait(30)
            seen["within"] = not over(guard.deadline)    # what the interpreter asks

    worker = threading.Thread(target=delivery)
    worker.start()
    armed.wait(30)
    start = time.thread_time()
    while time.thread_time() - start < 0.6:     # another thread's 0.6 s of CPU
        pass
    burnt.set()
    worker.join(30)
    assert seen == {"within": True}
