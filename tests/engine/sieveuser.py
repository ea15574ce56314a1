"""The set-up the engine's Sieve suites share: one test user with an empty home,
a settings file of the suite's own, and the user's personal script and logs.

    with sieve_user(mail_users[1], installed, "mailslot-sieve-conf-") as site:
        site.script('require "fileinto"; fileinto "Lists";')
        ...                     # site.lda, site.conf, site.maildir, site.log()

The settings file (maildir:~/Maildir, log_path in the home, first_valid_uid 100)
is written in a world-readable temp directory (the delivering user reads it) that
is removed afterwards. Suites subclass SieveUser to add how they deliver.
"""

import contextlib
import os
import shutil

from tests.support import empty_directory, world_tempdir


def empty_home(user):
    """Remove everything in user's home (a mailbox, logs, scripts of an earlier case)."""
    empty_directory(user.pw_dir)


class SieveUser:
    """user: the pwd entry; confdir/conf: the settings; lda: the installed engine."""

    def __init__(self, user, installed, confdir, conf):
        self.user = user
        self.home = user.pw_dir
        self.maildir = os.path.join(user.pw_dir, "Maildir")
        self.lda = os.path.join(installed, "mailslot-lda")
        self.confdir = confdir
        self.conf = conf

    def script(self, text):
        """Write the personal script ~/.dovecot.sieve, owned by the user."""
        path = os.path.join(self.home, ".dovecot.sieve")
        with open(path, "w") as f:
            f.write(text)
        os.chown(path, self.user.pw_uid, self.user.pw_gid)

    def log(self):
        """The delivery log (log_path)."""
        with open(os.path.join(self.home, "log")) as f:
            return f.read()

    def user_log(self):
        """The personal script's log (~/.dovecot.sieve.log)."""
        with open(os.path.join(self.home, ".dovecot.sieve.log")) as f:
            return f.read()


@contextlib.contextmanager
def sieve_user(user, installed, prefix, cls=SieveUser):
    """An instance of cls for user with an empty home and fresh settings."""
    empty_home(user)
    confdir = world_tempdir(prefix)
    conf = os.path.join(confdir, "mailslot.yaml")
    with open(conf, "w") as f:
        f.write(f"mail_location: maildir:~/Maildir\nlog_path: {user.pw_dir}/log\n"
                "first_valid_uid: 100\n")
    os.chmod(conf, 0o644)
    try:
        yield cls(user, installed, confdir, conf)
    finally:
        shutil.rmtree(confdir, ignore_errors=True)
