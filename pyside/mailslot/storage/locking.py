"""Dotlocks, made and broken by Dovecot's rules (src/lib/file-dotlock.c, 2.3).

A dotlock on <name> is the file <name>.lock in the same directory. It holds
"<pid>:<hostname>" (no newline) and is born whole: the content and the mode go into
a unique temp file first, which is then hard-linked to the lock name (atomic, and
NFS-safe). Dovecot creates the lock with O_EXCL and writes into it afterwards, so a
kill in between leaves an empty lock nobody breaks for its stale timeout (issue
21.5); here a kill leaves at most the temp file, which locks nothing. A lock file
that is itself the new content of <name> (keep_open=True, write_pid=False, as
Dovecot's subscriptions file is rewritten: write into the lock, then replace()) is
created with O_EXCL (use_excl, Dovecot's default) or the same link method.
In mailslot-lmtpd (LOCK_FILES set) a lock holding our pid is a new link to one of
the process's own lock files instead of a fresh temp file: no inode per lock, the
same lock on disk (storage/lock_files.py says what it keeps and where it steps aside).

A lock is stale, and is removed, when:
  - it is older than STALE_PID_CHECK_SECS, names our hostname, and its pid is dead
    (kill(pid, 0) fails with ESRCH) -- or is our own pid; or
  - it names no live local pid and neither it nor the file it protects has changed
    for stale_timeout seconds (120 for dovecot-uidlist, 30 for subscriptions).
  - it was last changed before the system booted, and is empty or names our
    hostname: no process that took it is running now. A power cut can leave a lock
    that was born whole empty all the same (its name reached the disk, its
    content did not), or naming a pid a new process has been given since.
A lock held by a live local process is never broken, however old.

Everything works relative to a directory fd (dir_fd), and no path is followed
through a symlink: the lock is created with O_EXCL|O_NOFOLLOW, its state is read
with lstat, the protected file with stat(follow_symlinks=False).

Errors: acquire_dotlock() returns None when the lock stays busy (at once with
timeout=0, else after timeout seconds); any other failure is the OSError itself,
which callers turn into their own StorageError with the path.

File locks (fcntl, flock, lockf: Dovecot's mbox lock methods) are at the end of
this module: lock_file() takes one on an open fd, unlock_file() releases it.
"""

import os
import time

DOTLOCK_SUFFIX = ".lock"
# Dovecot's STALE_PID_CHECK_SECS: a younger lock is assumed alive without reading it.
STALE_PID_CHECK_SECS = 2
# Dovecot's LOCK_RANDOM_USLEEP_TIME (0.1-0.2 s) and LOCK_MAX_WAIT_USECS (3 s).
LOCK_WAIT_MIN_SECS = 0.1
LOCK_WAIT_MAX_SECS = 3.0
# read_local_pid() reads at most this much of a lock file (Dovecot: 512 bytes).
LOCK_CONTENT_MAX = 512
# A long-lived process (mailslot-lmtpd) sets a lock_files.LockFilePool here: a lock
# holding our pid is then a new link to one of its files, not a new inode.
LOCK_FILES = None


def boot_time():
    """When the system booted (wall-clock seconds, /proc/stat's btime); 0 if unknown."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _read_lock(dir_fd, lock_name):
    """A lock file's content (at most LOCK_CONTENT_MAX - 1 bytes), or None."""
    try:
        fd = os.open(lock_name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK,
                     dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return os.read(fd, LOCK_CONTENT_MAX - 1)
    except OSError:
        return None
    finally:
        os.close(fd)


class _ChangeInfo:
    __slots__ = ("dev", "ino", "size", "ctime", "mtime")

    def __init__(self):
        self.dev = self.ino = self.size = self.ctime = self.mtime = 0


def _update_change_info(st, info, last_change, now):
    """Record st in info; return (changed, last_change) as Dovecot's update_change_info."""
    ctime, mtime = int(st.st_ctime), int(st.st_mtime)
    if (info.ino != st.st_ino or info.dev != st.st_dev or info.ctime != ctime
            or info.mtime != mtime or info.size != st.st_size):
        change_time = now
        if info.ctime == 0:
            # First look: the file's own change time (mtime when newer, but never
            # in the future, since mtime can carry other meaning).
            change_time = mtime if (mtime <= now and mtime > ctime) else ctime
        if last_change < change_time:
            last_change = change_time
        info.dev, info.ino, info.ctime, info.mtime, info.size = (
            st.st_dev, st.st_ino, ctime, mtime, st.st_size)
        return True, last_change
    return False, last_change


def read_lock_pid(dir_fd, lock_name, hostname):
    """Return the pid in a "<pid>:<host>" lock file if host is ours, else None."""
    data = _read_lock(dir_fd, lock_name)
    if data is None:
        return None
    text = data.decode("utf-8", "replace")
    if text.endswith("\n"):
        text = text[:-1]
    pid, sep, host = text.partition(":")
    if not sep or host != hostname or not pid.isdigit():
        return None
    pid = int(pid)
    return pid if pid > 0 else None


class _LockState:
    """What one acquire_dotlock() call has seen of the lock so far."""

    def __init__(self, dir_fd, name, lock_name, hostname, stale_timeout, sleep_on_override,
                 may_override=None):
        self.dir_fd, self.name, self.lock_name = dir_fd, name, lock_name
        self.hostname, self.stale_timeout = hostname, stale_timeout
        self.sleep_on_override = sleep_on_override
        self.may_override = may_override
        self.lock_info, self.file_info = _ChangeInfo(), _ChangeInfo()
        self.last_change = 0
        self.pid_read = self.have_pid = False
        self.last_pid_check = 0
        self.on_release = None          # set by LOCK_FILES: its file back to the pool
        self.borrowed = None            # set by LOCK_FILES: the fd is its file's, not
                                        # ours; what an fstat of it would say

    def _lstat_lock(self):
        try:
            return os.stat(self.lock_name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def _from_before_boot(self, st):
        """The lock was last changed before this boot and is empty or ours by host.
        ctime, not mtime: a lock's owner can set its mtime, never its ctime."""
        if st.st_ctime >= boot_time():
            return False
        data = _read_lock(self.dir_fd, self.lock_name)
        if data is None:
            return False
        return data.strip() == b"" or \
            data.decode("utf-8", "replace").rstrip("\n").endswith(":" + self.hostname)

    def _override(self):
        try:
            os.unlink(self.lock_name, dir_fd=self.dir_fd)
        except FileNotFoundError:
            pass
        # Why sleep: another process may be overriding the same stale lock right
        # now; without a pause it could unlink the lock we are about to create.
        if self.sleep_on_override:
            time.sleep(LOCK_WAIT_MIN_SECS + os.urandom(1)[0] / 255 * LOCK_WAIT_MIN_SECS)

    def check(self, now):
        """Return True when the lock may be created now (absent or broken as stale)."""
        st = self._lstat_lock()
        if st is None:
            return True
        changed, self.last_change = _update_change_info(st, self.lock_info, self.last_change, now)
        if changed and self._from_before_boot(st):
            # Why: a power cut left it (empty: its name reached the disk before its
            # content) -- waiting stale_timeout for it would hold mail for minutes.
            self._override()
            return True
        pid = None
        if changed or not self.pid_read:
            if self.lock_info.mtime >= now - STALE_PID_CHECK_SECS:
                self.pid_read = False
            else:
                pid = read_lock_pid(self.dir_fd, self.lock_name, self.hostname)
                self.pid_read = True
            self.have_pid = pid is not None
        elif self.have_pid:
            if self.last_pid_check == now:
                return False
            pid = read_lock_pid(self.dir_fd, self.lock_name, self.hostname)
            self.have_pid = pid is not None
        if self.have_pid:
            self.last_pid_check = now
            try:
                os.kill(pid, 0)
                alive = True
            except ProcessLookupError:
                alive = False
            except OSError:
                alive = True        # EPERM: it exists, owned by someone else
            if alive and pid != os.getpid():
                return False
            # Dead (or our own pid left behind): override if it is still the same file.
            st = self._lstat_lock()
            if st is None:
                return True
            changed, self.last_change = _update_change_info(
                st, self.lock_info, self.last_change, now)
            if not changed:
                self._override()
            return True
        if self.stale_timeout == 0:
            return False
        if now > self.last_change + self.stale_timeout:
            # Possibly stale: the protected file changing also counts as activity.
            try:
                st = os.stat(self.name, dir_fd=self.dir_fd, follow_symlinks=False)
            except FileNotFoundError:
                pass
            else:
                _, self.last_change = _update_change_info(
                    st, self.file_info, self.last_change, now)
        if now > self.last_change + self.stale_timeout:
            if self.may_override is not None and not self.may_override():
                # Dovecot's dotlock callback: the holder still holds the next
                # lock, so the dotlock is alive however old it looks.
                self.last_change = now
                return False
            self._override()
            return True
        return False


class Dotlock:
    """A held dotlock. release() removes it; replace() renames it over its file."""

    def __init__(self, dir_fd, name, lock_name, fd, st):
        self.dir_fd, self.name, self.lock_name = dir_fd, name, lock_name
        self.fd = fd                      # open only with keep_open=True
        self.dev, self.ino = st.st_dev, st.st_ino
        self.mtime = int(st.st_mtime)
        self.held = True
        self.on_release = None

    def is_ours(self):
        """True if the lock file on disk is still the one we created."""
        try:
            st = os.stat(self.lock_name, dir_fd=self.dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return False
        return st.st_dev == self.dev and st.st_ino == self.ino

    def touch(self):
        """Refresh the lock's mtime so that waiters do not think it stale."""
        now = int(time.time())
        if now != self.mtime:
            os.utime(self.lock_name, (now, now), dir_fd=self.dir_fd, follow_symlinks=False)
            self.mtime = now

    def _close(self):
        self.held = False
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def release(self):
        """Remove the lock if it is still ours; return False if someone replaced it."""
        if not self.held:
            return False
        close_error = None
        try:
            self._close()
        except OSError as exc:
            # Why go on: a failing close must not leave the lock behind for its
            # stale timeout (issue 21.4); the error passes up once it is removed.
            close_error = exc
        removed = False
        try:
            if self.is_ours():
                try:
                    os.unlink(self.lock_name, dir_fd=self.dir_fd)
                    removed = True
                except FileNotFoundError:
                    pass
        finally:
            if self.on_release is not None:
                done, self.on_release = self.on_release, None
                done()
        if close_error is not None:
            raise close_error
        return removed

    def replace(self):
        """Rename the lock file over its target (write-then-rename); False if lost."""
        if not self.held:
            return False
        ours = self.is_ours()
        self._close()
        if not ours:
            return False
        os.rename(self.lock_name, self.name, src_dir_fd=self.dir_fd, dst_dir_fd=self.dir_fd)
        return True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()


def _write_pid(fd, hostname):
    data = f"{os.getpid()}:{hostname}".encode()
    if os.write(fd, data) != len(data):
        raise OSError(28, "short write to a dotlock")


def _create_excl(state, mode, write_pid):
    try:
        fd = os.open(state.lock_name,
                     os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     mode, dir_fd=state.dir_fd)
    except FileExistsError:
        return None
    if write_pid:
        try:
            _write_pid(fd, state.hostname)
        except OSError:
            os.close(fd)
            os.unlink(state.lock_name, dir_fd=state.dir_fd)
            raise
    return fd


def temp_lock_name(hostname):
    """The unique temp file a lock is written into before it is linked into place.

    Why it ends in ".lock": it lies beside the mailbox it locks, and Dovecot's mbox
    storage takes every other file in a mail directory for a mailbox (a dovecot-lda
    running alongside logged "Mailbox .temp...: open() failed", and a temp file left
    by a kill would show in IMAP as a folder); names ending in ".lock" are Dovecot's
    own lock files, never listed.
    """
    return f".temp.{hostname}.{os.getpid()}.{os.urandom(6).hex()}.lock"


def _create_link(state, mode, write_pid):
    # A unique temp file, written whole, then link(): the lock appears with its
    # content or not at all (atomic, even on NFS where O_EXCL is not).
    temp = temp_lock_name(state.hostname)
    fd = os.open(temp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                 mode, dir_fd=state.dir_fd)
    try:
        if (os.fstat(fd).st_mode & 0o7777) != mode:
            # Why here: the lock must be born with its mode too (umask 077 under
            # the relay must not decide who can read Dovecot's lock files).
            os.fchmod(fd, mode)
        if write_pid:
            _write_pid(fd, state.hostname)
        try:
            os.link(temp, state.lock_name, src_dir_fd=state.dir_fd,
                    dst_dir_fd=state.dir_fd, follow_symlinks=False)
        except FileExistsError:
            # Over NFS the reply can be lost after the link was made: the link
            # count of our temp file tells the truth.
            if os.fstat(fd).st_nlink != 2:
                os.close(fd)
                fd = None
                return None
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise
    finally:
        try:
            os.unlink(temp, dir_fd=state.dir_fd)
        except OSError:
            pass
    return fd


def acquire_dotlock(dir_fd, name, *, hostname, stale_timeout, timeout=0,
                    mode=0o600, write_pid=True, keep_open=False, use_excl=True,
                    sleep_on_override=True, may_override=None):
    """Create <name>.lock in dir_fd; return a Dotlock, or None if it stayed busy.

    timeout 0 tries once (Dovecot's DOTLOCK_CREATE_FLAG_NONBLOCK) -- a stale lock
    is still broken; otherwise waits up to timeout seconds. mode is the lock
    file's exact mode (the umask does not apply). may_override(), when given, is
    asked before a lock that is stale only by its age is broken. OSError for
    anything else, e.g. FileNotFoundError when the directory is gone.
    """
    lock_name = name + DOTLOCK_SUFFIX
    state = _LockState(dir_fd, name, lock_name, hostname, stale_timeout, sleep_on_override,
                       may_override)
    now = int(time.time())
    # The stale rules count whole seconds of the wall clock, as Dovecot's; the
    # wait is measured on the monotonic clock so that it lasts what was asked.
    deadline = time.monotonic() + timeout
    wait = LOCK_WAIT_MIN_SECS
    prev_last_change = None
    # A lock holding our pid is always born whole (_create_link); O_EXCL only for a
    # lock that is itself the file's new content (write_pid=False).
    create = _create_excl if (use_excl and not write_pid) else _create_link
    # With a free pool file the first try is the link itself, before any lstat: a
    # free lock (nearly always) costs no lookup, and a busy one fails the link with
    # EEXIST and no inode made -- then the loop below looks at it as always, stale
    # rules included.
    fd = None
    if write_pid and LOCK_FILES is not None and LOCK_FILES.serves(mode):
        create = LOCK_FILES.create
        fd = create(state, mode, write_pid, free_only=True)
    while fd is None:
        if state.check(now):
            fd = create(state, mode, write_pid)
            if fd is not None:
                break
        if time.monotonic() >= deadline:
            return None
        if prev_last_change != state.last_change:
            wait = LOCK_WAIT_MIN_SECS
            prev_last_change = state.last_change
        else:
            wait = min(wait * 1.5, LOCK_WAIT_MAX_SECS)
        pause = wait + os.urandom(1)[0] / 255 * LOCK_WAIT_MIN_SECS
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        now = int(time.time())
    try:
        st = state.borrowed
        if st is None:
            st = os.fstat(fd)
            if (st.st_mode & 0o7777) != mode:
                # Why fchmod: the umask (077 under the relay) must not decide who
                # can read Dovecot's lock files; Dovecot sets the mode explicitly.
                os.fchmod(fd, mode)
        elif keep_open:
            # A pool file, made with this mode: the Dotlock closes its own fd.
            fd = os.dup(fd)
            state.borrowed = None
    except BaseException:
        if state.borrowed is None:
            os.close(fd)
        try:
            os.unlink(lock_name, dir_fd=dir_fd)
        except OSError:
            pass
        if state.on_release is not None:
            state.on_release()
        raise
    if not keep_open:
        if state.borrowed is None:
            os.close(fd)
        fd = None
    lock = Dotlock(dir_fd, name, lock_name, fd, st)
    lock.on_release = state.on_release
    return lock


# --- file locks: fcntl, flock, lockf (Dovecot's mbox lock methods) ----------------------

FILE_LOCK_METHODS = ("fcntl", "flock", "lockf")
# Polling pace when the kernel cannot queue us (outside the main thread no alarm
# can end a blocking wait).
FILE_LOCK_POLL_MIN_SECS = 0.005
FILE_LOCK_POLL_MAX_SECS = 0.1
# errno values meaning "held by someone else" for a non-blocking try: EAGAIN and
# EACCES (POSIX allows either for F_SETLK).
_BUSY_ERRNOS = (11, 13)


class _LockWaitOver(Exception):
    """Raised by the ITIMER_REAL alarm to end a blocking lock wait."""


def _alarm_rang(signum, frame):
    raise _LockWaitOver()


def _file_lock_call(fd, method, shared, wait):
    """One lock attempt; True if taken, False if busy (never False when wait)."""
    import fcntl
    op = fcntl.LOCK_SH if shared else fcntl.LOCK_EX
    if not wait:
        op |= fcntl.LOCK_NB
    try:
        if method == "flock":
            fcntl.flock(fd, op)
        else:
            # fcntl: a POSIX record lock on the whole file. lockf(3) is, on Linux,
            # the same kind of lock from the current offset on; it is taken from
            # offset 0 here, so that an O_APPEND fd moving on cannot shrink it.
            fcntl.lockf(fd, op, 0, 0, 0)
    except OSError as err:
        if wait or err.errno not in _BUSY_ERRNOS:
            raise
        return False
    return True


def lock_file(fd, method, *, shared=False, timeout=0, tick=None, tick_secs=None):
    """Take a method lock ("fcntl", "flock", "lockf") on fd; True, or False on timeout.

    timeout 0 tries once. Otherwise waits up to timeout seconds; tick(), when
    given, is called about every tick_secs while waiting (a dotlock holder
    refreshes its lock file meanwhile). OSError for anything but "busy".
    """
    if method not in FILE_LOCK_METHODS:
        raise ValueError(f"unknown lock method {method!r}")
    if _file_lock_call(fd, method, shared, False):
        return True
    if timeout <= 0:
        return False
    deadline = time.monotonic() + timeout
    ticking = tick is not None and tick_secs
    next_tick = time.monotonic() + tick_secs if ticking else None
    import _signal          # not "signal": its enum import costs the pipe path ~8 ms
    try:
        old_handler = _signal.signal(_signal.SIGALRM, _alarm_rang)
    except ValueError:      # not the main thread: no alarm can reach us
        return _poll_file_lock(fd, method, shared, deadline, tick, tick_secs, next_tick)
    old_timer = _signal.setitimer(_signal.ITIMER_REAL, 0)
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                return _file_lock_call(fd, method, shared, False)
            if next_tick is not None and now >= next_tick:
                tick()
                next_tick = time.monotonic() + tick_secs
                continue
            wait = deadline - now
            if next_tick is not None:
                wait = min(wait, next_tick - now)
            try:
                try:
                    # Why a blocking wait: the kernel hands the lock over the moment
                    # a reader lets go; polling would let busy readers starve us.
                    _signal.setitimer(_signal.ITIMER_REAL, max(wait, 0.001))
                    _file_lock_call(fd, method, shared, True)
                finally:
                    _signal.setitimer(_signal.ITIMER_REAL, 0)
                return True
            except _LockWaitOver:
                pass
            # The alarm may have rung just after the lock was granted: a second
            # (non-blocking) try tells, since taking a lock we hold succeeds.
            if _file_lock_call(fd, method, shared, False):
                return True
    finally:
        _signal.signal(_signal.SIGALRM, old_handler)
        if old_timer[0] > 0:
            _signal.setitimer(_signal.ITIMER_REAL, old_timer[0], old_timer[1])


def _poll_file_lock(fd, method, shared, deadline, tick, tick_secs, next_tick):
    pause = FILE_LOCK_POLL_MIN_SECS
    while True:
        if _file_lock_call(fd, method, shared, False):
            return True
        now = time.monotonic()
        if now >= deadline:
            return False
        if next_tick is not None and now >= next_tick:
            tick()
            next_tick = time.monotonic() + tick_secs
        time.sleep(min(pause, deadline - now))
        pause = min(pause * 2, FILE_LOCK_POLL_MAX_SECS)


def unlock_file(fd, method):
    """Release a lock_file() lock."""
    import fcntl
    if method == "flock":
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        fcntl.lockf(fd, fcntl.LOCK_UN, 0, 0, 0)


# struct flock as Linux lays it out on 64-bit platforms (short l_type, short
# l_whence, off_t l_start, off_t l_len, pid_t l_pid, native alignment).
_FLOCK_LAYOUT = "@hhqqi"


def file_lock_blocker(fd, method):
    """Who keeps an exclusive method lock on fd from us right now.

    Returns None when nothing does, "shared" when only shared (read) locks do,
    "exclusive" for a write lock, or "unknown" (flock locks cannot be asked).
    Asked with F_GETLK, which names one conflicting lock: if it is a read lock,
    every conflicting lock is one (a write lock excludes all others).
    """
    if method == "flock":
        return "unknown"
    import fcntl
    import struct
    probe = struct.pack(_FLOCK_LAYOUT, fcntl.F_WRLCK, 0, 0, 0, 0)
    try:
        answer = fcntl.fcntl(fd, fcntl.F_GETLK, probe)
    except OSError:
        return "unknown"
    kind = struct.unpack(_FLOCK_LAYOUT, answer)[0]
    if kind == fcntl.F_UNLCK:
        return None
    return "shared" if kind == fcntl.F_RDLCK else "exclusive"
