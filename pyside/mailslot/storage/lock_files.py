"""Dotlock files made once and linked again: no inode per lock (mailslot-lmtpd).

    pool = LockFilePool(temp_dir)           # the server, once per process
    locking.LOCK_FILES = pool               # acquire_dotlock() then asks it first
    ...
    pool.close()                            # at exit: its files and directory go

A dotlock is born whole: a file holding "<pid>:<host>" is written, then link()ed to
<name>.lock (locking.py). Made and removed for every lock, that is one inode
allocated and freed per Maildir delivery (dovecot-uidlist.lock). On ext4 without a
journal the kernel finds every new inode by scanning past the inodes freed in the
last minutes (ialloc.c, recently_deleted()): on the benchmark machine that scan was
a quarter of mailslot-lmtpd's CPU per message (perf, docs/benchmarks.md). A
long-lived process does not need a new inode per lock: it keeps a few lock files of
its own, already holding its "<pid>:<host>", in a private directory, and takes a
lock by linking a free one to <name>.lock -- a new name for an existing inode.

What stays as in locking.py: the lock appears with its content or not at all (the
content was written when the file was made); its mode is the one asked for; each
lock held at once has its own file, so the link count still tells whether our link
was made (the NFS check of _create_link); release() removes <name>.lock only while
it is ours (same inode). What is added: just before the link the file's times are
set to now, so that waiters see a lock as fresh as a new one -- Dovecot's stale
rules and locking.py's read its mtime and ctime, and a lock older than
STALE_PID_CHECK_SECS that names our own pid counts as left behind. A file goes back
to the pool only once no lock name links to it any more (link count 1): a lock we
could not remove keeps its inode to itself and ages as any other.

Not used (the ordinary temp-file method instead): a mode that gives the group or
others any bit (the lock would take the group of our directory, not the
mailbox's), a mailbox on another filesystem than temp_dir (EXDEV), more than
MAX_FILES locks at once, any failure before the link.

Errors: nothing is raised for the pool's own trouble; the caller falls back. The
ordinary errors of a lock (a directory gone) pass up as OSError, as in locking.py.

Security: the directory is made as mkdtemp makes one (mode 0700, a fresh random
name, O_EXCL semantics of mkdir) inside temp_dir, so nobody else can swap a file under a name we link from; files are made
with O_EXCL|O_NOFOLLOW and linked relative to directory fds, following no symlink.
A crash leaves the directory and its few small files behind (names start with
PREFIX); the locks they were linked to name a dead pid and are broken as stale.
"""

import os
import threading
import time

from . import locking

PREFIX = ".mailslot-locks."
# One file per lock held at the same moment: deliveries in flight in one process.
MAX_FILES = 64


class _File:
    __slots__ = ("name", "fd", "key", "st_dev", "st_ino")

    def __init__(self, name, fd, key, st):
        self.name, self.fd, self.key = name, fd, key
        self.st_dev, self.st_ino = st.st_dev, st.st_ino


class _Linked:
    """What acquire_dotlock() would fstat() a lent file for: the file's identity
    (known since it was made) and the mtime just set. Its mode is the pool's key."""
    __slots__ = ("st_dev", "st_ino", "st_mtime")

    def __init__(self, entry, mtime):
        self.st_dev, self.st_ino, self.st_mtime = entry.st_dev, entry.st_ino, mtime


class LockFilePool:
    """This process's reusable lock files, by (mode, host name)."""

    def __init__(self, temp_dir):
        self.path = _private_directory(temp_dir)
        self.dir_fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        self._free = {}
        self._count = 0
        self._serial = 0
        self._lock = threading.Lock()
        self.links = 0          # locks taken by a link of a pool file (tests count them)

    def serves(self, mode):
        return not mode & 0o077 and self.dir_fd is not None

    def create(self, state, mode, write_pid, *, free_only=False):
        """locking's create step: the lock's fd, None when the lock is busy.

        free_only: the try before any look at the lock (acquire_dotlock) -- only
        with a free pool file; None if there is none (no file made for a lock that
        may be busy)."""
        entry = self._take(mode, state.hostname, make=not free_only)
        if entry is None:
            if free_only:
                return None
            return locking._create_link(state, mode, write_pid)
        try:
            # Why: the lock must look new to waiters (see above), not as old as the file.
            now = time.time_ns()
            os.utime(entry.fd, ns=(now, now))
            os.link(entry.name, state.lock_name, src_dir_fd=self.dir_fd,
                    dst_dir_fd=state.dir_fd, follow_symlinks=False)
        except FileExistsError:
            if os.fstat(entry.fd).st_nlink == 1:
                self._give_back(entry)
                return None             # busy: someone else holds the lock
        except OSError:
            # Another filesystem (EXDEV) or our file gone: the ordinary way.
            self._give_back(entry)
            return locking._create_link(state, mode, write_pid)
        self.links += 1
        state.on_release = lambda: self._give_back(entry)
        # Lent, not dup()ed, with what an fstat would say (three system calls fewer
        # per lock): acquire_dotlock() dups it itself for keep_open.
        state.borrowed = _Linked(entry, now // 1_000_000_000)
        return entry.fd

    def _take(self, mode, hostname, make=True):
        key = (mode, hostname)
        with self._lock:
            free = self._free.get(key)
            if free:
                return free.pop()
            if not make or self._count >= MAX_FILES or self.dir_fd is None:
                return None
            self._count += 1
            self._serial += 1
            serial = self._serial
        name = f"{os.getpid()}.{serial}.lock"
        try:
            fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, mode, dir_fd=self.dir_fd)
            try:
                os.fchmod(fd, mode)
                locking._write_pid(fd, hostname)
                st = os.fstat(fd)
            except OSError:
                os.close(fd)
                os.unlink(name, dir_fd=self.dir_fd)
                raise
        except OSError:
            with self._lock:
                self._count -= 1
            return None
        return _File(name, fd, key, st)

    def _give_back(self, entry):
        """Back to the pool when no lock name links to it any more; else forgotten."""
        try:
            free = os.fstat(entry.fd).st_nlink == 1
        except OSError:
            free = False
        if free:
            with self._lock:
                self._free.setdefault(entry.key, []).append(entry)
            return
        with self._lock:
            self._count -= 1
        self._drop(entry)

    def _drop(self, entry):
        dir_fd = self.dir_fd
        if dir_fd is not None:          # None: closed, the directory is gone
            try:
                os.unlink(entry.name, dir_fd=dir_fd)
            except OSError:
                pass
        try:
            os.close(entry.fd)
        except OSError:
            pass

    def close(self):
        """Remove the free files and the directory (files still linked as locks stay
        until released: their names go with the directory only if they are free)."""
        with self._lock:
            entries = [e for free in self._free.values() for e in free]
            self._free = {}
            dir_fd, self.dir_fd = self.dir_fd, None
        for entry in entries:
            self._drop_in(dir_fd, entry)
        try:
            os.rmdir(self.path)
        except OSError:
            pass
        if dir_fd is not None:
            os.close(dir_fd)

    @staticmethod
    def _drop_in(dir_fd, entry):
        try:
            os.unlink(entry.name, dir_fd=dir_fd)
        except OSError:
            pass
        os.close(entry.fd)


def _private_directory(temp_dir, attempts=100):
    """A new directory PREFIX<random> in temp_dir, mode 0700 (tempfile.mkdtemp's
    recipe without importing tempfile: 0.75 MiB in every worker process of
    mailslot-lmtpd, docs/benchmarks.md "LMTP memory"). No temp_dir (mail_temp_dir
    unset): $TMPDIR, else /tmp, as tempfile would choose."""
    temp_dir = temp_dir or os.environ.get("TMPDIR") or "/tmp"
    for _ in range(attempts):
        path = os.path.join(temp_dir, PREFIX + os.urandom(6).hex())
        try:
            os.mkdir(path, 0o700)       # fails if the name exists: never someone else's
        except FileExistsError:
            continue
        return path
    raise FileExistsError(f"no free directory name in {temp_dir}")
