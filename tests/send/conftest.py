"""Fixtures for the outgoing-mail tests: this suite's own users and an SMTP sink.

Each session makes its own two users (send_users); each test empties their homes
first. `mailer` gives a settings file that sends through
a real SMTP server on 127.0.0.1 (tests/send/smtpsink.py) and a deliver() that runs
the installed mailslot-lda as one of the users.
"""

import os
import shutil
import subprocess

import pytest

from tests.support import IS_ROOT, ensure_user, remove_user, run_as, world_tempdir
from tests.send.smtpsink import SmtpSink


@pytest.fixture(scope="session")
def send_users():
    """Two users of this session alone (mslt-s<random>a/b, removed at the end): the
    suite runs concurrently in other checkouts (CI, other sessions), and a shared
    user's home would be emptied under another run's feet."""
    if not IS_ROOT:
        pytest.skip("needs root to create test users (CI runs as root)")
    base = world_tempdir("mailslot-send-homes-")
    tag = os.urandom(3).hex()
    users = []
    try:
        for letter in "ab":
            name = f"mslt-s{tag}{letter}"
            users.append(ensure_user(name, os.path.join(base, name)))
        yield users
    finally:
        for user in users:
            remove_user(user.pw_name)
            subprocess.run(["groupdel", user.pw_name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


class Mailer:
    def __init__(self, installed, users, sink, confdir):
        self.installed, self.users, self.sink, self.confdir = installed, users, sink, confdir
        self.conf = os.path.join(confdir, "mailslot.yaml")
        self.write_conf()

    def write_conf(self, extra=""):
        with open(self.conf, "w") as f:
            f.write("mail_location: maildir:~/Maildir\nlog_path: ~/log\n"
                    "first_valid_uid: 100\nhostname: mx.example.org\n"
                    "postmaster_address: postmaster@example.org\n"
                    f"submission_host: {self.sink.address}\nsubmission_timeout: 10\n"
                    + extra)
        os.chmod(self.conf, 0o644)
        # The settings cache beside the file is keyed on its inode and times.
        cache = os.path.join(self.confdir, ".mailslot.yaml.cache")
        if os.path.exists(cache):
            os.unlink(cache)

    def script(self, user, text):
        path = os.path.join(user.pw_dir, ".dovecot.sieve")
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, user.pw_uid, user.pw_gid)

    def deliver(self, user, message, *args):
        return run_as(user, [os.path.join(self.installed, "mailslot-lda"), "-c", self.conf]
                      + list(args), input=message)

    def inbox(self, user):
        new = os.path.join(user.pw_dir, "Maildir", "new")
        if not os.path.isdir(new):
            return []
        out = []
        for name in sorted(os.listdir(new)):
            with open(os.path.join(new, name), "rb") as f:
                out.append(f.read())
        return out

    def log(self, user):
        try:
            with open(os.path.join(user.pw_dir, "log")) as f:
                return f.read()
        except FileNotFoundError:
            return ""


@pytest.fixture
def mailer(installed, send_users):
    for user in send_users:
        for entry in os.listdir(user.pw_dir):
            path = os.path.join(user.pw_dir, entry)
            shutil.rmtree(path) if os.path.isdir(path) and not os.path.islink(path) \
                else os.unlink(path)
    confdir = world_tempdir("mailslot-send-conf-")
    with SmtpSink() as sink:
        yield Mailer(installed, send_users, sink, confdir)
    shutil.rmtree(confdir, ignore_errors=True)
