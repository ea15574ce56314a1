"""Shared pieces of the mbox tests: a home for an unprivileged user, children, checks.

    home = MboxHome.create()                 # a temp dir owned by TEST_UID
    proc = home.spawn(plan)                  # tests/mbox/deliverer.py as that user
    messages = verify_mbox(path)             # structure (mutt's rules) + digests

verify_mbox() is the strict reader: the file is a sequence of whole messages --
it starts with a From_ line that mutt would take for one, every later From_ line
follows a blank line, it ends with the blank line that ends the last message, no
other line starts with "From " -- and every message built by make_message() still
has the body whose SHA-256 its header names. It returns the messages as Python's
mailbox.mbox reads them, mboxrd-unquoted.
"""

import hashlib
import json
import mailbox
import os
import re
import shutil
import subprocess
import sys
import tempfile

from tests.support import REPO

PYSIDE = os.path.join(REPO, "pyside")
DELIVERER = os.path.join(REPO, "tests", "mbox", "deliverer.py")
SETPRIV = shutil.which("setpriv") or "/usr/bin/setpriv"
PYTHON = "/usr/bin/python3"
# The unprivileged identity of tests/dovecot_env.py (no passwd entry needed).
TEST_UID = TEST_GID = 64123

# mutt's is_from(): "From " return-path, then a ctime()-style date (the weekday and
# the time zone are optional in what mutt accepts; this is what writers produce).
FROM_LINE = re.compile(rb"^From (\S+|\"[^\"]*\"@\S+)  ?"
                       rb"(Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
                       rb"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                       rb"[ 0-9]\d \d\d:\d\d(:\d\d)? (\S+ )?\d{4}$")
SUBJECT = re.compile(rb"^Subject: (.*)$", re.M)
DIGEST = re.compile(rb"^X-Body-SHA256: ([0-9a-f]{64})$", re.M)


def unquote_mboxrd(data):
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b">") and line.lstrip(b">").startswith(b"From "):
            lines[i] = line[1:]
    return b"\n".join(lines)


def check_structure(data):
    """Raise AssertionError unless data is whole messages only (see the docstring)."""
    if not data:
        return 0
    assert data.startswith(b"From "), data[:80]
    assert data.endswith(b"\n\n"), f"last message not ended: {data[-80:]!r}"
    count = 0
    lines = data.split(b"\n")
    for i, line in enumerate(lines):
        if line.startswith(b"From "):
            assert FROM_LINE.match(line), f"line {i} is not a From_ line: {line[:100]!r}"
            assert i == 0 or lines[i - 1] == b"", f"From_ line {i} does not follow a blank line"
            count += 1
    return count


def read_messages(path):
    """The messages of path as mailbox.mbox reads them: [(from_line, bytes)]."""
    box = mailbox.mbox(path, create=False)
    try:
        return [(box.get_message(k).get_from(), unquote_mboxrd(box.get_bytes(k)))
                for k in box.keys()]
    finally:
        box.close()


def verify_mbox(path):
    """Check path strictly; return {subject: message bytes} (subjects unique)."""
    with open(path, "rb") as f:
        data = f.read()
    count = check_structure(data)
    messages = read_messages(path)
    assert len(messages) == count, (len(messages), count)
    found = {}
    for _from, raw in messages:
        head, _, body = raw.partition(b"\n\n")
        subject = SUBJECT.search(head).group(1).decode()
        digest = DIGEST.search(head)
        if digest is not None:
            assert hashlib.sha256(body).hexdigest() == digest.group(1).decode(), \
                f"message {subject} is damaged"
        assert subject not in found, f"message {subject} is there twice"
        found[subject] = raw
    return found


class MboxHome:
    """A temp dir every uid can traverse, with home/ owned by the test user."""

    def __init__(self, base, uid, gid):
        self.base, self.uid, self.gid = base, uid, gid
        self.home = os.path.join(base, "home")

    @classmethod
    def create(cls, uid=None, gid=None):
        root = os.geteuid() == 0
        uid = uid if uid is not None else (TEST_UID if root else os.getuid())
        gid = gid if gid is not None else (TEST_GID if root else os.getgid())
        base = tempfile.mkdtemp(prefix="mailslot-mbox-")
        os.chmod(base, 0o755)
        home = cls(base, uid, gid)
        os.mkdir(home.home, 0o700)
        if root:
            os.chown(home.home, uid, gid)
        return home

    def cleanup(self):
        shutil.rmtree(self.base, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.home, *parts)

    def plan(self, **fields):
        plan = {"pyside": PYSIDE, "location": "mbox:~/mail", "home": self.home,
                "tag": "m", "count": 1, "size": 2000}
        plan.update(fields)
        return plan

    def argv(self, plan):
        prefix = []
        if os.geteuid() == 0:
            prefix = [SETPRIV, f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups"]
        return prefix + [PYTHON, "-I", DELIVERER, json.dumps(plan)]

    def spawn(self, plan, **kwargs):
        return subprocess.Popen(self.argv(plan), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd="/",
                                env={"PATH": "/usr/bin:/bin", "HOME": self.home}, **kwargs)

    def run(self, plan, timeout=120):
        """Run a deliverer to its end; return (returncode, [result dicts], stderr)."""
        proc = self.spawn(plan)
        out, err = proc.communicate(timeout=timeout)
        return proc.returncode, parse_results(out), err.decode(errors="replace")


def parse_results(out):
    return [json.loads(line) for line in out.decode().splitlines() if line.startswith("{")]


def journal_active(path):
    """True while the journal at path holds a record (an append in flight)."""
    try:
        with open(path, "rb") as f:
            return f.read(1) not in (b"", b"\0")
    except FileNotFoundError:
        return False


def python_child(code, *args):
    """argv for a small Python helper process (a reader, a lock holder)."""
    return [sys.executable, "-c", code, *args]
