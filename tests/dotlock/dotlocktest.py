"""Shared pieces of the dotlock tests: accounts, the installed copy, helpers.

mailslot-dotlock is tested as the real setgid binary: a copy built with its spool
directory pointing into a temp dir (-DMAILSLOT_SPOOL_DIR), two lock attempts
(-DMAILSLOT_LOCK_ATTEMPTS=2, so a refused lock takes 1 s, not 19) and a change
timeout of CHANGE_TIMEOUT seconds instead of Dovecot's 120 (-DMAILSLOT_DOTLOCK_
CHANGE_TIMEOUT), so that a lock can age in a test; installed there
root:mail 2755 beside a spool directory root:mail 2775 (as Debian's /var/mail), and
run as test users (mslt-d*) through setpriv.
"""
import grp
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# MAILSLOT_HELPER_C: build another copy of the sources (e.g. an older commit, to see
# a test fail without its fix).
HELPER_C = Path(os.environ.get("MAILSLOT_HELPER_C", REPO / "helper_c"))
MAIL_GROUP = "mail"
ALICE = "mslt-dalice"
BOB = "mslt-dbob"
# A login useradd accepts whose spool file is ALICE's lock name.
ALICE_LOCK = ALICE + ".lock"
USERS = [ALICE, BOB, ALICE_LOCK]
# The test build's mbox_dotlock_change_timeout, in seconds.
CHANGE_TIMEOUT = 3


def remove_accounts():
    for user in USERS:
        subprocess.run(["userdel", "-f", user], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        subprocess.run(["groupdel", user], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


class DotlockInstall:
    def __init__(self, base, accounts):
        self.base = base
        self.accounts = accounts
        self.spool = base / "spool"
        self.build = base / "build"
        self.bin = base / "bin"
        self.helper = self.bin / "mailslot-dotlock"
        self.mail_gid = grp.getgrnam(MAIL_GROUP).gr_gid

    def spool_file(self, user):
        return self.spool / user

    def lock_file(self, user):
        return self.spool / f"{user}.lock"

    def run(self, user, *args, helper=None, env=None, wrapper=(), groups=None):
        """Run the helper as user (its own groups, or the gids in groups)."""
        entry = self.accounts[user]
        grouping = ["--init-groups"] if groups is None else [
            "--groups=" + ",".join(str(g) for g in groups)]
        cmd = ["setpriv", f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}"] + grouping \
            + list(wrapper) + [str(helper or self.helper)] + list(args)
        return subprocess.run(cmd, capture_output=True, timeout=120,
                              env=env or {"PATH": "/usr/bin:/bin"})

    def make_spool(self, user, owner=None, mode=0o600):
        path = self.spool_file(user)
        path.write_bytes(b"")
        entry = self.accounts[owner or user]
        os.chown(path, entry.pw_uid, self.mail_gid)
        os.chmod(path, mode)
        return path

    def leftovers(self):
        """Names in the spool directory other than spool files."""
        return sorted(p.name for p in self.spool.iterdir() if p.name not in (ALICE, BOB))


def assert_refused(proc, code, rule):
    err = proc.stderr.decode(errors="replace")
    assert proc.returncode == code, err
    assert f"mailslot-dotlock: {rule}:" in err, err
