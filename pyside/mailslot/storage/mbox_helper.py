"""mailslot-dotlock's client: the INBOX's dotlock (and the INBOX itself) made by the
set-group-id helper where the spool directory belongs to the mail group.

In /var/mail (root:mail 2775) a user cannot create "<login>.lock" or a missing
INBOX; Dovecot then uses its privileged group for a moment, mailslot runs
mailslot-dotlock (root:mail 2755, helper_c/) instead, so the engine never holds
that group itself. MboxStorage makes a DotlockHelper only when a dotlock or the
INBOX's creation was refused with EACCES/EPERM (storage/mbox.py, mbox_lock.py):
a delivery into a mailbox the user may lock never imports this module.

DotlockHelper.check decides whether the helper may be used for a path: only the
configured INBOX, only with mail_privileged_group set, only when the binary is
root-owned and set-group-id that group. run() spawns it with an argv and a fixed
environment, stdin and stdout /dev/null, and keeps at most HELPER_ERROR_MAX bytes
of its stderr. helper_lock() is MboxLocks' dotlock step through it.

Errors: StorageError (not the INBOX, no mail_privileged_group -- with Dovecot's
hint naming the directory's group --, a missing or wrongly installed helper, a
refusal with the helper's own diagnostic), ConfigError for an unknown
mail_privileged_group.

Security: the helper itself accepts only <spool dir>/<caller's login> and removes
only a lock naming its caller's process; this side only refuses to run a binary
that is not root-owned set-group-id mail_privileged_group.
"""

import os
import time

from ..errors import ConfigError, StorageError
from .dirs import storage_error

HELPER_NAME = "mailslot-dotlock"
# The most of the helper's stderr kept for an error message.
HELPER_ERROR_MAX = 2048


def default_helper_path():
    """mailslot-dotlock beside the installed engine (<libdir>/python/mailslot/...).

    Made here and in MboxStorage only when needed (a path, no stat).."""
    here = os.path.dirname(os.path.abspath(__file__))           # .../mailslot/storage
    libdir = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    return os.path.join(libdir, HELPER_NAME)


class DotlockHelper:
    """mailslot-dotlock (root:mail 2755): the INBOX's dotlock where the spool
    directory is the mail group's. path is the binary; guard, while a save runs,
    is its SignalGuard (the helper then runs with signals held)."""

    def __init__(self, path, privileged_group, inbox):
        self.path = path
        self.privileged_group = privileged_group
        self.inbox = inbox
        self.guard = None

    def check(self, path, err, purpose):
        """Make sure mailslot-dotlock may be used for path; StorageError if not."""
        head = path.rpartition("/")[0] or "/"
        if path != self.inbox:
            raise storage_error(f"trying to {purpose}: not INBOX, so no privileged "
                                "locking for", path, err)
        if not self.privileged_group:
            group = _group_name_of(head)
            hint = f"set mail_privileged_group={group}" if group else \
                "nonstandard permissions"
            raise StorageError(f"{path}: cannot {purpose}: {_errno_text(err)} in {head} "
                               f"({hint})")
        import grp
        try:
            gid = grp.getgrnam(self.privileged_group).gr_gid
        except KeyError:
            raise ConfigError(f"unknown group {self.privileged_group!r}",
                              key="mail_privileged_group") from None
        try:
            st = os.stat(self.path)
        except OSError as exc:
            raise StorageError(f"{path}: cannot {purpose} ({_errno_text(err)} in {head}) "
                               f"and {self.path} is missing: "
                               f"{_errno_text(exc)}") from None
        if (st.st_mode & 0o170000) != 0o100000 or not st.st_mode & 0o2000 \
                or st.st_gid != gid or st.st_uid != 0:
            raise StorageError(f"{path}: cannot {purpose} ({_errno_text(err)} in {head}) "
                               f"and {self.path} is not root-owned set-group-id "
                               f"{self.privileged_group} (reinstall it)")

    def run(self, command, path):
        """Run mailslot-dotlock command path; return (exit code, its diagnostic).

        During a save it runs with signals held (see SignalGuard.run_held): the
        helper is bounded by its own attempts, and whether it took a lock must be
        known before a signal may unwind the save.
        """
        guard = self.guard
        if guard is not None:
            return guard.run_held(self._spawn, command, path)
        return self._spawn(command, path)

    def _spawn(self, command, path):
        r, w = os.pipe()
        try:
            pid = os.posix_spawn(self.path, [self.path, command, path],
                                 {"PATH": "/usr/bin:/bin"}, file_actions=[
                                     (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
                                     (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
                                     (os.POSIX_SPAWN_DUP2, w, 2)])
        except OSError as err:
            os.close(r)
            os.close(w)
            raise storage_error("running", self.path, err) from None
        os.close(w)
        chunks = []
        try:
            while True:
                data = os.read(r, 4096)
                if not data:
                    break
                if sum(len(c) for c in chunks) < HELPER_ERROR_MAX:
                    chunks.append(data)
        finally:
            os.close(r)
            _, status = os.waitpid(pid, 0)
        code = os.waitstatus_to_exitcode(status)
        message = b"".join(chunks)[:HELPER_ERROR_MAX].decode("utf-8", "replace").strip()
        return code, message or f"exit status {code}"


def helper_lock(self, deadline, wait):
    """For MboxLocks self (mbox_lock.py): the dotlock through mailslot-dotlock: "lock" (one run tries for about 20 s)
    when this is the lock to wait for, else "trylock" (one check), so that the
    locks already held are never kept while the helper waits."""
    storage = self.storage
    command = "lock" if wait else "trylock"
    while True:
        self.dotlock_tried = True
        code, message = storage.helper.run(command, self.path)
        self.dotlock_tried = False      # its outcome is known (see _dotlock)
        if code == 0:
            self.helper_locked = True           # released by release()
            self.dotlock_late = bool(self.fd_locks)
            self.last_touch = time.monotonic()
            self.guard.checkpoint()
            return True
        self.guard.checkpoint()
        if code == 75 and "lock-timeout" in message:
            if not wait:
                return False
            if self._remaining(deadline) > 0:
                continue        # keep asking until our own mbox_lock_timeout
            raise self._timeout()
        raise StorageError(f"{self.path}: {storage.helper.path} refused to lock it: "
                           f"{message}")


def _errno_text(err):
    import errno
    name = errno.errorcode.get(getattr(err, "errno", None) or 0)
    text = getattr(err, "strerror", None) or str(err)
    return f"{text} ({name})" if name else text


def _group_name_of(path):
    """The group of a group-writable, not world-writable directory (Dovecot's hint)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if st.st_mode & 0o002 or not st.st_mode & 0o020:
        return None
    import grp
    try:
        return grp.getgrgid(st.st_gid).gr_name
    except KeyError:
        return str(st.st_gid)
