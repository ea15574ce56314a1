"""The subscriptions file, the same for Maildir and mbox: Dovecot's list-level file.

Version 2 (what Dovecot writes and what a new file gets): "V\\t2\\n\\n", then one
mailbox per line, components tab-separated and tab-escaped
(str_append_tabescaped). A version 1 file (no header) stays version 1: names
unescaped, joined with the storage's separator, as Dovecot keeps it. The file is
rewritten through <name>.lock and a rename (src/lib-storage/list/subscription-file.c),
in the control root (CONTROL=, else the mail root).

Errors: StorageError naming the path and the errno; a lock held past
SUBSCRIPTIONS_LOCK_TIMEOUT, or ours overridden meanwhile, is a StorageError too.

Security: the control root is opened through dirs.DirOpener (O_NOFOLLOW below the
configured root), the old file O_NOFOLLOW in it; the new one is the lock file,
renamed over it.
"""

import os

from ..errors import StorageError
from .dirs import Fds, storage_error
from .locking import acquire_dotlock

# Dovecot's SUBSCRIPTION_FILE_LOCK_TIMEOUT and SUBSCRIPTION_FILE_CHANGE_TIMEOUT.
SUBSCRIPTIONS_LOCK_TIMEOUT = 120
SUBSCRIPTIONS_STALE_TIMEOUT = 30
SUBSCRIPTIONS_V2_HEADER = "V\t2\n\n"


def tab_escape(s):
    """Dovecot's str_append_tabescaped."""
    return (s.replace("\x01", "\x011").replace("\t", "\x01t")
            .replace("\r", "\x01r").replace("\n", "\x01n"))


def subscribe(dirs, root, fname, parts, separator, *, hostname, fsync):
    """Add the mailbox whose encoded components are parts to root/fname.

    dirs is the storage's DirOpener; separator joins parts in a version 1 file.
    """
    path = f"{root}/{fname}"
    with Fds() as fds:
        root_fd = fds.add(dirs.open_root(root, create=True))
        perm = dirs.perm_of(root_fd)
        try:
            lock = acquire_dotlock(root_fd, fname, hostname=hostname,
                                   stale_timeout=SUBSCRIPTIONS_STALE_TIMEOUT,
                                   timeout=SUBSCRIPTIONS_LOCK_TIMEOUT,
                                   mode=perm.file_mode, write_pid=False, keep_open=True)
        except OSError as err:
            raise storage_error("locking", path, err) from None
        if lock is None:
            raise StorageError(f"{path}: timed out waiting for the subscriptions lock")
        try:
            _rewrite(root_fd, fname, path, parts, separator, lock, fsync)
        except OSError as err:
            raise storage_error("writing", path, err) from None
        finally:
            lock.release()


def _rewrite(root_fd, fname, path, parts, separator, lock, fsync):
    try:
        fd = os.open(fname, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
    except FileNotFoundError:
        old = None
    else:
        with os.fdopen(fd, "rb") as f:
            old = f.read().decode("utf-8", "surrogateescape")
    if old is None or old == "" or old.startswith(SUBSCRIPTIONS_V2_HEADER):
        header = SUBSCRIPTIONS_V2_HEADER
        body = (old or SUBSCRIPTIONS_V2_HEADER)[len(SUBSCRIPTIONS_V2_HEADER):]
        line = "\t".join(tab_escape(p) for p in parts) + "\n"
    else:
        header, body = "", old
        line = separator.join(parts) + "\n"
    lines = body.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if line[:-1] in lines:
        return              # already subscribed: leave the file untouched
    data = header + "".join(x + "\n" for x in lines) + line
    view = memoryview(data.encode("utf-8", "surrogateescape"))
    while view:
        view = view[os.write(lock.fd, view):]
    if fsync:
        # Why: a subscription that was confirmed must survive a crash.
        os.fsync(lock.fd)
    if not lock.replace():
        raise StorageError(f"{path}: our subscriptions lock was overridden")
