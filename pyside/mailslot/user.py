"""Who a recipient is: the User record, and the user this process runs as.

User is what every user database answers (userdb/); current_user() answers for a
delivery without -d from the kernel's uid and the passwd entry, and needs no user
database: the plain pipe path (mailbox_command, ~/.forward) loads only this module,
not the userdb package (the import budget in tests/engine/test_lda.py).

Errors: current_user raises errors.UserdbError when no name can be found for the uid.

Security: the uid is the kernel's; $USER and $HOME are believed only when $USER
names this very uid, so a stale environment cannot redirect mail.
"""

import os
import pwd

from mailslot import errors


class User:
    """One recipient: name, uid, gid, home ("" when none) and extra userdb fields.

    fields holds the rest of the userdb's answer with the "userdb_" prefix stripped
    (mail, quota_rule, sieve, any setting override); warnings the lines a log
    should carry (malformed passwd-file entries met on the way).
    """

    def __init__(self, name, uid, gid, home, fields=None, warnings=None, source=""):
        self.name, self.uid, self.gid, self.home = name, uid, gid, home
        self.fields = dict(fields or {})
        self.warnings = list(warnings or [])
        self.source = source    # "userdb <name or driver>": who answered

    def __repr__(self):
        return (f"User(name={self.name!r}, uid={self.uid}, gid={self.gid}, "
                f"home={self.home!r}, fields={self.fields!r})")


def current_user():
    """Return the User this process runs as (delivery without -d).

    $USER and $HOME are used when $USER names this uid (or the uid has no passwd
    entry, as for a uid handed out by a container); otherwise the passwd entry of
    getuid() wins, so a stale environment (su without -l) cannot redirect mail.
    Raises errors.UserdbError when no name can be found for the uid.
    """
    uid, gid = os.getuid(), os.getgid()
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    env_user = os.environ.get("USER") or None
    env_home = os.environ.get("HOME") or ""
    if entry is None:
        if env_user is None:
            raise errors.UserdbError(
                f"cannot find our user name: uid {uid} has no passwd entry and $USER is unset")
        return User(env_user, uid, gid, env_home)
    agrees = env_user is not None and (env_user == entry.pw_name or _names_uid(env_user, uid))
    if agrees:
        return User(env_user, uid, gid, env_home or entry.pw_dir)
    # No $USER: keep $HOME as dovecot-lda does; a $USER naming someone else: neither.
    home = env_home if env_user is None and env_home else entry.pw_dir
    return User(entry.pw_name, uid, gid, home)


def _names_uid(name, uid):
    """True when the passwd entry called name has this uid (an alias such as toor)."""
    try:
        return pwd.getpwnam(name).pw_uid == uid
    except (KeyError, ValueError):
        return False
