"""What the fast-path tests share: a fresh mailbox for a test user, delivering
through the front, reading the log. Not a test module."""

import os
import re
import shutil

from tests.support import empty_directory, run_as, world_tempdir

MSG = (b"From: Alice <alice@example.org>\nTo: bob@example.org\n"
       b"Subject: hello\nMessage-ID: <fp1@example.org>\n\nHello Bob.\n")
HANDOFF_LINE = re.compile(r"lda\([^)]*\)<\d+><handoff>: ")
ORDINARY_LINE = re.compile(r"lda\([^)]*\)<\d+>: ")


class Box:
    """A test user's fresh home with a Maildir configuration."""

    def __init__(self, user, front):
        self.user, self.front = user, front
        empty_directory(user.pw_dir)
        self.confdir = world_tempdir("mailslot-fpconf-")
        self.conf = os.path.join(self.confdir, "mailslot.yaml")
        self.log = os.path.join(user.pw_dir, "mailslot.log")
        self.maildir = os.path.join(user.pw_dir, "Maildir")
        with open(self.conf, "w") as f:
            f.write(f"mail_location: maildir:~/Maildir\nlog_path: {self.log}\n"
                    "hostname: test.example.org\nfirst_valid_uid: 100\n")
        os.chmod(self.conf, 0o644)

    def argv(self, *args, binary=None):
        return [binary or self.front.front, "-c", self.conf] + list(args)

    def deliver(self, *args, input=MSG, env=None, binary=None, prefix=(), **kw):
        argv = list(prefix) + self.argv(*args, binary=binary)
        return run_as(self.user, argv, input=input, env=env, **kw)

    def new(self):
        path = os.path.join(self.maildir, "new")
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def tmp(self):
        path = os.path.join(self.maildir, "tmp")
        return sorted(os.listdir(path)) if os.path.isdir(path) else []

    def read_new(self):
        return [open(os.path.join(self.maildir, "new", n), "rb").read() for n in self.new()]

    def log_counts(self):
        """(lines marked <handoff>, lines of the ordinary path)."""
        if not os.path.exists(self.log):
            return 0, 0
        text = open(self.log, errors="replace").read()
        return len(HANDOFF_LINE.findall(text)), len(ORDINARY_LINE.findall(text))

    def close(self):
        shutil.rmtree(self.confdir, ignore_errors=True)
