"""mbox locking: the locks of mbox_write_locks and the signal guard.

MboxLocks takes the locks of mbox_write_locks on one open mbox in their order
("fcntl dotlock", Debian's Dovecot's order, by default; also flock, lockf,
dotlock_try) within mbox_lock_timeout, as Dovecot's mbox-lock.c does (see mbox.py
for the whole save): a later lock is waited for only while readers hold it (a later
dotlock for LATER_DOTLOCK_WAIT_SECS); held by a writer (who may be waiting for our
first lock) all are let go and the busy lock is the one waited for next round, in
its holders' queue, so neither lock order deadlocks and none starves us (21.3). A dotlock is stale when its pid is dead on this host, or
untouched for mbox_dotlock_change_timeout while its holder does not hold the next
lock either. Where the INBOX's directory is the mail group's, the dotlock is taken
through mailslot-dotlock (mbox_helper.py, imported only then). SignalGuard turns SIGTERM/SIGINT/SIGHUP/SIGPIPE during one save
into an exception that unwinds it (rollback, unlock), then re-sends the signal; its
handlers are installed when a save starts and removed when it ends.

Threads (mailslot-lmtpd delivers in several): before any file lock, MboxLocks takes
an in-process lock of its own for the mbox (one per directory inode and file name,
_ProcessLocks), and lets it go only in close(). Why: the dotlock and fcntl locks
keep other processes out, but every thread here has the same pid, so a dotlock
naming "our" pid or an fcntl lock (per process, not per thread) is no barrier
between two threads; a mistake in that logic must never let two of our own appends
interleave. The pipe path has one thread: the lock is always free.

Errors: ConfigError (a bad lock list, an unknown mail_privileged_group);
StorageError for a timeout, a replaced or foreign mbox, a helper that refused
(mbox_helper.py).

Security: check_mbox_file refuses anything but a regular file owned by the
delivering user with one link (planted symlinks, hard links, FIFOs); the helper's
own checks are in mbox_helper.py.
"""

import _thread
import os
import time

from ..errors import ConfigError, StorageError
from .dirs import storage_error
from .locking import (DOTLOCK_SUFFIX, FILE_LOCK_METHODS, acquire_dotlock,
                       file_lock_blocker, lock_file, read_lock_pid, unlock_file)

LOCK_METHODS = ("dotlock", "dotlock_try") + FILE_LOCK_METHODS
# Dovecot's MBOX_LOCK_TOUCH_MSECS: a held dotlock is refreshed this often while we
# wait for the next lock or write a long message.
DOTLOCK_TOUCH_SECS = 10
# How often the mbox is reopened when it was replaced while we waited for locks.
REOPEN_ATTEMPTS = 3
# The pause (doubling, with jitter) after a later lock of the list was busy and all
# were let go, so that a program locking in the other order gets through.
LOCK_BACKOFF_MIN_SECS = 0.01
LOCK_BACKOFF_MAX_SECS = 0.5
# How long one wait for readers lasts before the holders are looked at again.
READER_WAIT_SECS = 0.2
# How long a later dotlock is waited for while the locks before it are held
# (Dovecot waits for it the same way): a writer in the same order holds it only
# for its append, and giving up our place at once sends us to the back of the
# queue every time (issue 21.3). Bounded, because a writer in the other order may
# hold it while it waits for our earlier lock: then all is let go as before.
LATER_DOTLOCK_WAIT_SECS = 0.25
LATER_DOTLOCK_POLL_MIN_SECS = 0.0005
LATER_DOTLOCK_POLL_MAX_SECS = 0.02


def parse_lock_methods(text, key):
    """Dovecot's lock list ("dotlock fcntl") as a tuple; ConfigError if invalid."""
    methods = []
    for word in str(text).split():
        method = word.lower()
        if method not in LOCK_METHODS:
            raise ConfigError(f"invalid value {word!r} (use {', '.join(LOCK_METHODS)})",
                              key=key)
        if method in methods:
            raise ConfigError(f"duplicated value {word!r}", key=key)
        methods.append(method)
    if not methods:
        raise ConfigError("no lock method given", key=key)
    return tuple(methods)


def check_lock_order(read_locks, write_locks):
    """Dovecot's rule: write locks contain the read locks, in the same order."""
    r = 0
    for method in write_locks:
        if r < len(read_locks) and read_locks[r] == method:
            r += 1
    if r != len(read_locks):
        raise ConfigError("mbox read/write lock list settings are invalid: lock ordering "
                          "must be the same with both, and write locks must contain all "
                          "read locks (and possibly more)", key="mbox_read_locks")


class Interrupted(BaseException):
    """A guarded signal arrived: unwind, roll back, unlock, then re-raise it."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class SignalGuard:
    """While a save runs, SIGTERM/SIGINT/SIGHUP/SIGPIPE unwind it instead of killing it.

    The handler raises Interrupted once while armed; hold() disarms it for the
    clean-up (a second signal must not interrupt a rollback), the signal is then
    only recorded. On exit the old handlers come back and a recorded signal is
    sent again, so it has its usual effect once nothing is held. Signals that are
    ignored (SIGPIPE is, in Python) stay ignored: they cannot stop a save.
    """

    def __init__(self):
        self.saved = {}
        self.pending = None
        self.armed = False

    def __enter__(self):
        import _signal      # not "signal": its enum import costs the pipe path ~8 ms
        for signum in (_signal.SIGTERM, _signal.SIGINT, _signal.SIGHUP, _signal.SIGPIPE):
            old = _signal.getsignal(signum)
            if old is None or old == _signal.SIG_IGN:
                continue    # ignored, or set outside Python: left alone
            try:
                _signal.signal(signum, self._handle)
            except ValueError:
                break       # not the main thread: no handlers can be set
            self.saved[signum] = old
        self.armed = True
        return self

    def _handle(self, signum, frame):
        if self.pending is None:
            self.pending = signum
        if self.armed:
            self.armed = False
            raise Interrupted(signum)

    def hold(self):
        """From now on a signal is only recorded (clean-up runs to its end)."""
        self.armed = False

    def run_held(self, call, *args):
        """call(*args) with signals only recorded; then act on one that came.

        For steps whose outcome must be known even if a signal comes meanwhile
        (the helper taking a lock): the caller records the outcome and then calls
        checkpoint().
        """
        armed, self.armed = self.armed, False
        try:
            return call(*args)
        finally:
            self.armed = armed

    def checkpoint(self):
        """Raise Interrupted now if a signal came while it was held."""
        if self.armed and self.pending is not None:
            self.armed = False
            raise Interrupted(self.pending)

    def __exit__(self, exc_type, exc, tb):
        import _signal
        self.armed = False
        for signum, old in self.saved.items():
            _signal.signal(signum, old)
        if self.pending is not None:
            # Why send it again: the caller asked us to stop; now that the mbox is
            # rolled back and unlocked the signal may do what it normally does.
            os.kill(os.getpid(), self.pending)
            raise StorageError(f"delivery interrupted by signal {self.pending}") from None
        return False


class _ProcessLocks:
    """One in-process lock per mbox (directory inode, file name), made when first
    wanted and forgotten when its last user lets go (the table stays bounded)."""

    def __init__(self):
        self._guard = _thread.allocate_lock()
        self._locks = {}                # key -> [lock, users]

    def acquire(self, key, timeout):
        with self._guard:
            entry = self._locks.get(key)
            if entry is None:
                entry = self._locks[key] = [_thread.allocate_lock(), 0]
            entry[1] += 1
        if entry[0].acquire(True, max(timeout, 0.0)):
            return True
        self._forget(key)
        return False

    def release(self, key):
        with self._guard:
            entry = self._locks[key]
        entry[0].release()
        self._forget(key)

    def _forget(self, key):
        with self._guard:
            entry = self._locks[key]
            entry[1] -= 1
            if not entry[1]:
                del self._locks[key]


PROCESS_LOCKS = _ProcessLocks()


class MboxLocks:
    """The locks of mbox_write_locks on one mbox, taken in order, released reversed."""

    def __init__(self, storage, dir_fd, dir_path, fname, is_inbox, mbox_fd):
        self.storage = storage
        self.dir_fd, self.dir_path, self.fname = dir_fd, dir_path, fname
        self.path = f"{dir_path}/{fname}"
        self.is_inbox = is_inbox
        self.mbox_fd = mbox_fd
        self.dotlock = None             # a locking.Dotlock we made ourselves
        self.helper_locked = False      # a dotlock made by mailslot-dotlock
        self.dotlock_tried = False
        self.dotlock_late = False       # taken after an fd lock: released before it
        self.fd_locks = []              # methods held on mbox_fd
        self.last_touch = time.monotonic()
        self.guard = None
        self.process_key = None         # held in PROCESS_LOCKS until close()

    def acquire(self, guard):
        """Take every lock within mbox_lock_timeout; reopen a replaced mbox.

        The first lock is waited for (nothing else is held then). A later one is
        waited for only while readers alone hold it (fcntl read locks: a reader
        never waits for a dotlock), a later dotlock only briefly; if a writer
        holds it, or it is a busy flock, everything is released and the round
        starts again waiting for the busy lock first. Why: another program may
        take the same locks in the other order -- Debian's Dovecot (and our
        default) "fcntl dotlock", upstream's "dotlock fcntl" -- holding its first
        lock while it waits for its second, and if we did the same both would
        wait for ever.
        """
        self.guard = guard
        deadline = time.monotonic() + self.storage.lock_timeout
        if self.process_key is None:
            # Why first: no other thread of ours may be between its locks and its
            # append on this mbox, whatever the file locks below conclude.
            st = os.fstat(self.dir_fd)
            key = (st.st_dev, st.st_ino, self.fname)
            if not PROCESS_LOCKS.acquire(key, self._remaining(deadline)):
                raise self._timeout()
            self.process_key = key
        pause = LOCK_BACKOFF_MIN_SECS
        reopened = 0
        methods = self.storage.write_locks
        first = 0
        while True:
            held = True
            # The lock waited for is the one a writer held last round (at first,
            # the list's first): waiting in the same queue as the writers that
            # take it first keeps our place in it, where backing off and
            # starting over lost it every time (issue 21.3). Nothing else is held
            # while it is waited for, so no order can deadlock.
            order = [first] + [i for i in range(len(methods)) if i != first]
            for i in order:
                method = methods[i]
                wait = i == first
                if method.startswith("dotlock"):
                    held = self._dotlock(method, deadline, wait)
                else:
                    held = self._fd_lock(method, deadline, wait)
                if not held:
                    break
            if held:
                if self._still_same_file():
                    return
                self.release()
                reopened += 1
                if reopened >= REOPEN_ATTEMPTS:
                    raise StorageError(f"{self.path}: the mbox keeps being replaced while "
                                       "we lock it")
                self._reopen()
                continue
            self.release()
            remaining = self._remaining(deadline)
            if remaining <= 0:
                raise self._timeout()
            if i != first:
                first = i           # wait for that one next round, in its queue
                continue
            time.sleep(min(remaining, pause + os.urandom(1)[0] / 255 * pause))
            pause = min(pause * 2, LOCK_BACKOFF_MAX_SECS)

    def _remaining(self, deadline):
        return max(0.0, deadline - time.monotonic())

    def _timeout(self):
        return StorageError(f"{self.path}: Timeout while waiting for lock "
                            f"(mbox_lock_timeout={self.storage.lock_timeout}s)")

    def _next_fd_method(self):
        methods = self.storage.write_locks
        for method in methods[methods.index("dotlock" if "dotlock" in methods
                                            else "dotlock_try") + 1:]:
            if not method.startswith("dotlock"):
                return method
        return None

    def _may_override(self):
        """Dovecot's dotlock callback: a dotlock looks stale by age; is it?"""
        method = self._next_fd_method()
        if method is None or method in self.fd_locks:
            # We hold that lock ourselves, so the dotlock's holder does not (and a
            # test lock on our own fd would succeed, and unlocking it drop ours).
            return True
        try:
            if not lock_file(self.mbox_fd, method, timeout=0):
                return False        # its holder still holds the next lock
        except OSError:
            return True
        unlock_file(self.mbox_fd, method)
        return True

    def _dotlock(self, method, deadline, wait):
        """Take the dotlock (waiting only if wait); True if held or not needed."""
        import errno
        storage = self.storage
        self.dotlock_tried = True
        try:
            st = os.fstat(self.mbox_fd)
            mode = (st.st_mode & 0o666) | 0o600
            if wait:
                lock = acquire_dotlock(self.dir_fd, self.fname, hostname=storage.hostname,
                                       stale_timeout=storage.change_timeout,
                                       timeout=self._remaining(deadline), mode=mode,
                                       may_override=self._may_override)
            else:
                lock = self._later_dotlock(deadline, mode)
        except OSError as err:
            if err.errno in (errno.EACCES, errno.EPERM):
                if method == "dotlock_try":
                    return True     # Dovecot: dotlock_try gives up quietly
                # The spool directory is the mail group's: mailslot-dotlock's job.
                from .mbox_helper import helper_lock
                storage.helper.check(self.path, err, "create a dotlock")
                return helper_lock(self, deadline, wait)
            if method == "dotlock_try" and err.errno in (errno.ENOSPC, errno.EDQUOT):
                return True
            raise storage_error("dotlocking", self.path, err) from None
        # The attempt ended: we hold the lock or made none. Only an attempt cut
        # short (a signal) may leave an orphan for release() to remove -- a lock
        # naming our pid after a finished attempt is another thread's (the LMTP
        # daemon delivers in threads of one process), not an orphan.
        self.dotlock_tried = False
        if lock is None:
            if wait:
                raise self._timeout()
            return False
        self.dotlock = lock
        self.dotlock_late = bool(self.fd_locks)
        return True

    def _later_dotlock(self, deadline, mode):
        """The dotlock after other locks: tried at short intervals for at most
        LATER_DOTLOCK_WAIT_SECS. Why short: Dovecot lets go of fcntl before it
        unlinks its dotlock, so the next fcntl holder finds the dotlock for a
        moment; acquire_dotlock's 0.1 s polls would hold fcntl that long for
        nothing, with every other writer waiting behind it (issue 21.3)."""
        storage = self.storage
        until = min(time.monotonic() + LATER_DOTLOCK_WAIT_SECS, deadline)
        pause = LATER_DOTLOCK_POLL_MIN_SECS
        while True:
            lock = acquire_dotlock(self.dir_fd, self.fname, hostname=storage.hostname,
                                   stale_timeout=storage.change_timeout, timeout=0,
                                   mode=mode, may_override=self._may_override)
            now = time.monotonic()
            if lock is not None or now >= until:
                return lock
            time.sleep(min(pause, until - now))
            pause = min(pause * 2, LATER_DOTLOCK_POLL_MAX_SECS)

    def _fd_lock(self, method, deadline, wait):
        """Take an fcntl/flock/lockf lock (see acquire() for the waiting); True if
        held, False if it is for a writer who may be waiting for us."""
        try:
            if wait:
                ok = lock_file(self.mbox_fd, method, timeout=self._remaining(deadline),
                               tick=self.touch_if_due, tick_secs=DOTLOCK_TOUCH_SECS)
                if not ok:
                    raise self._timeout()
            else:
                ok = self._fd_lock_after_others(method, deadline)
                if not ok:
                    return False
        except OSError as err:
            raise storage_error(f"{method} locking", self.path, err) from None
        self.fd_locks.append(method)
        return True

    def _fd_lock_after_others(self, method, deadline):
        while True:
            if lock_file(self.mbox_fd, method, timeout=0):
                return True
            blocker = file_lock_blocker(self.mbox_fd, method)
            if blocker is None:
                continue            # let go meanwhile: try again at once
            if blocker != "shared":
                return False
            remaining = self._remaining(deadline)
            if remaining <= 0:
                raise self._timeout()
            # Readers only: wait for them, in slices, so that a writer that slips
            # in meanwhile (and may wait for our dotlock) is noticed.
            if lock_file(self.mbox_fd, method, timeout=min(READER_WAIT_SECS, remaining),
                         tick=self.touch_if_due, tick_secs=DOTLOCK_TOUCH_SECS):
                return True

    def touch_if_due(self):
        """Refresh our dotlock's mtime every DOTLOCK_TOUCH_SECS (long waits, writes)."""
        if time.monotonic() - self.last_touch < DOTLOCK_TOUCH_SECS:
            return
        self.last_touch = time.monotonic()
        if self.dotlock is not None:
            if not self.dotlock.is_ours():
                raise StorageError(f"{self.path}: our dotlock was overridden")
            try:
                self.dotlock.touch()
            except OSError:
                pass
        elif self.helper_locked:
            code, message = self.storage.helper.run("touch", self.path)
            self.guard.checkpoint()
            if code != 0:
                raise StorageError(f"{self.path}: our dotlock could not be refreshed: "
                                   f"{message}")

    def _still_same_file(self):
        try:
            now = os.stat(self.fname, dir_fd=self.dir_fd, follow_symlinks=False)
        except OSError:
            return False
        held = os.fstat(self.mbox_fd)
        return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)

    def _reopen(self):
        old, self.mbox_fd = self.mbox_fd, None
        os.close(old)
        self.mbox_fd = self.storage._open_mbox(self.dir_fd, self.dir_path, self.fname,
                                               self.is_inbox, (self.fname,))

    def release(self):
        """Release everything held, in reverse order; never raises for a lost lock."""
        if self.fd_locks and self.dotlock_late:
            # Why the dotlock first when it was taken last ("fcntl dotlock", Debian's
            # order): a writer waiting for our fcntl lock would otherwise get it
            # while our dotlock still exists, and sit holding fcntl in its dotlock
            # wait while every other writer waits for it (issue 21.3).
            self._release_dotlock()
        while self.fd_locks:
            method = self.fd_locks.pop()
            try:
                unlock_file(self.mbox_fd, method)
            except OSError:
                pass        # closing the fd releases it anyway
        self._release_dotlock()

    def _release_dotlock(self):
        if self.helper_locked:
            self.helper_locked = False
            try:
                self.storage.helper.run("unlock", self.path)
            except (OSError, StorageError):
                pass
        if self.dotlock is not None:
            lock, self.dotlock = self.dotlock, None
            try:
                lock.release()
            except OSError:
                pass
        elif self.dotlock_tried:
            self._remove_orphan_dotlock()
        self.dotlock_tried = False

    def _remove_orphan_dotlock(self):
        """An interrupted acquire may have made the lock file: ours names our pid.

        A signal acted on just after mailslot-dotlock made the lock, before we
        noted it, leaves one in a directory we cannot write (the spool): the
        helper made it with our pid, so the helper's unlock (which removes only a
        lock naming its caller's process) takes it away.
        """
        lock_name = self.fname + DOTLOCK_SUFFIX
        if read_lock_pid(self.dir_fd, lock_name, self.storage.hostname) == os.getpid():
            try:
                os.unlink(lock_name, dir_fd=self.dir_fd)
            except PermissionError:
                if self.storage.helper.path:
                    try:
                        self.storage.helper.run("unlock", self.path)
                    except (OSError, StorageError):
                        pass
            except OSError:
                pass

    def close(self):
        try:
            if self.mbox_fd is not None:
                fd, self.mbox_fd = self.mbox_fd, None
                os.close(fd)
        finally:
            if self.process_key is not None:
                key, self.process_key = self.process_key, None
                PROCESS_LOCKS.release(key)


def check_mbox_file(st, path):
    """Refuse anything but a regular file of ours with one link (StorageError)."""
    if (st.st_mode & 0o170000) != 0o100000:
        raise StorageError(f"{path}: not a regular file, refused")
    if st.st_uid != os.geteuid():
        raise StorageError(f"{path}: owned by uid {st.st_uid}, not by the delivering user "
                           f"(uid {os.geteuid()}), refused")
    if st.st_nlink != 1:
        raise StorageError(f"{path}: has {st.st_nlink} hard links, refused (a link could "
                           "point the delivery at another file)")
