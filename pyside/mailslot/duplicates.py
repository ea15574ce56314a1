"""The duplicate database: what a user's deliveries already did, for a while.

One file per user (DEFAULT_NAME in the home, ~/.mailslot.lda-dupes; Dovecot keeps
its own binary ~/.dovecot.lda-dupes, which this file does not share). It remembers
vacation replies (handle + sender), redirects (message id + target) and Sieve's
`duplicate` test (RFC 7352), each with an expiry time.

    db = DuplicateDB(path, clock=time.time)
    if db.claim(key, period):     # atomically: not seen (or expired) -> remember it
        ...send...                # on failure: db.forget(key)
    db.check(key); db.mark(key, period)
    with db.sending(key, period) as fresh:   # the lock held over the send
        if fresh: ...send...      # remembered after the send returns, not before
    held = db.hold(key, period)   # the same in steps: held.fresh, then after the
                                  # send held.record(), or held.release()

claim() suits a send that may be lost (a vacation reply: a crash between the claim
and the send costs that reply, never a second one); sending() suits one that must
not be (a redirect may be the only delivery of the message): it is recorded after
the MTA has it, so a crash before the record makes the MTA's retry send once more
(one extra copy at most, Pigeonhole's order), while the lock held over the send
still keeps two deliveries of one message at once to one copy.

Keys are any str or bytes; the file holds a 128-bit hash of each (a key may carry
a sender's address: it is data, hashed, never a path or a line of the file).

Concurrency: every read-modify-write holds an exclusive fcntl lock on a separate
lock file (<file>.lock), so two deliveries to the same user never both claim one
key (one vacation reply, one forward). fcntl locks belong to the process, so
deliveries running in threads of one process (mailslot-lmtpd) also take a
per-path thread lock first. The lock wait is bounded (LOCK_TIMEOUT).

Durability: the new contents go to <file>.tmp (under the lock, so it is ours),
fsync, rename over the file, fsync the directory. A SIGKILL at any point leaves the
old file or the new one, never a mix; a stale .tmp is truncated by the next writer.
A file that is damaged anyway (a disk fault, a hand edit) loads with its bad lines
skipped: at worst one reply too many, never a failed delivery.

Bounds: at most MAX_ENTRIES entries (expired ones go first, then those that expire
soonest) and MAX_FILE_BYTES read, so the file and the work per delivery stay small
whatever the mail volume.

Errors: DuplicateDBError (the lock could not be had in time, the file could not be
written). Callers decide what that means: a vacation reply is not sent, a redirect
goes out without the duplicate check, a Sieve `duplicate` test is false.

Security: the running user owns the file; it is opened with O_NOFOLLOW, mode 0600.
"""

import os
import time

DEFAULT_NAME = ".mailslot.lda-dupes"
HEADER = b"mailslot-duplicates 1\n"
# A per-user bound: 4096 lines of 44 bytes is under 200 KB, read at most once a delivery.
MAX_ENTRIES = 4096
MAX_FILE_BYTES = 1024 * 1024
# Deliveries to one user queue for at most this long before giving up the lock.
LOCK_TIMEOUT = 10.0
_LOCK_POLL = 0.02


class DuplicateDBError(Exception):
    """The duplicate database could not be read or updated."""


def key_hash(key):
    """The 32-hex-digit name a key is stored under."""
    import hashlib
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogateescape")
    return hashlib.sha256(key).hexdigest()[:32]


class DuplicateDB:
    """One user's duplicate database file (see the module docstring)."""

    def __init__(self, path, *, clock=time.time, max_entries=MAX_ENTRIES):
        self.path = path
        self.clock = clock
        self.max_entries = max_entries

    # -- the public operations --------------------------------------------------------

    def check(self, key, period=None):
        """True when key was marked and has not expired (period: unused, for the
        Sieve duplicate test's store interface)."""
        now = int(self.clock())
        entries = self._load()
        return entries.get(key_hash(key), 0) > now

    def mark(self, key, period):
        """Remember key for period seconds from now."""
        with self._locked():
            entries = self._load()
            entries[key_hash(key)] = int(self.clock()) + max(int(period), 1)
            self._store(entries)

    def claim(self, key, period):
        """Atomically: False if key is remembered; else remember it and return True."""
        with self._locked():
            now = int(self.clock())
            entries = self._load()
            name = key_hash(key)
            if entries.get(name, 0) > now:
                return False
            entries[name] = now + max(int(period), 1)
            self._store(entries)
            return True

    def hold(self, key, period):
        """Take the lock and keep it: the answer's .fresh says whether key is not
        remembered; its record() remembers key and lets the lock go, release()
        only lets it go."""
        return _Hold(self, key, period)

    # hold() as a context: True when key is not remembered (the lock held until
    # the block ends); remembered when the block ends without an error.
    sending = hold

    def forget(self, key):
        """Drop key (a claimed send that failed, so that a retry may send)."""
        with self._locked():
            entries = self._load()
            if entries.pop(key_hash(key), None) is not None:
                self._store(entries)

    # -- the file ----------------------------------------------------------------------

    def _locked(self):
        return _FileLock(self.path + ".lock")

    def _load(self):
        """Return {hash: expiry} of the unexpired entries; bad lines are skipped."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise DuplicateDBError(f"cannot open {self.path}: {exc.strerror}") from None
        try:
            data = os.read(fd, MAX_FILE_BYTES)
        finally:
            os.close(fd)
        now = int(self.clock())
        entries = {}
        lines = data.split(b"\n")
        if data.endswith(b"\n"):
            lines.pop()
        elif lines:
            lines.pop()      # a last line without LF was cut: not trusted
        for line in lines[1:] if lines and lines[0] + b"\n" == HEADER else lines:
            name, _, expiry = line.partition(b" ")
            if len(name) != 32 or not expiry.isdigit() or len(expiry) > 12:
                continue
            try:
                name.decode("ascii")
                int(name, 16)
            except ValueError:
                continue
            when = int(expiry)
            if when > now:
                entries[name.decode("ascii")] = when
        return entries

    def _store(self, entries):
        if len(entries) > self.max_entries:
            keep = sorted(entries.items(), key=lambda kv: kv[1])[-self.max_entries:]
            entries = dict(keep)
        body = HEADER + b"".join(f"{k} {v}\n".encode("ascii")
                                 for k, v in entries.items())
        tmp = self.path + ".tmp"
        try:
            # Under the lock the .tmp is ours; O_TRUNC clears one a SIGKILL left.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600)
            try:
                view = memoryview(body)
                while view:
                    view = view[os.write(fd, view):]
                # Durability: the data is on disk before the name points at it.
                os.fsync(fd)
            finally:
                os.close(fd)
            # Atomic switch: readers see the old file or the new one, never a mix.
            os.rename(tmp, self.path)
            _fsync_dir(os.path.dirname(self.path) or ".")
        except OSError as exc:
            raise DuplicateDBError(f"cannot write {self.path}: {exc.strerror}") from None


class _Hold:
    """DuplicateDB.hold's answer: the database's lock, held from hold() until
    record() or release(); fresh says whether key was not remembered (or expired)
    when the lock was taken. Also a context (DuplicateDB.sending)."""

    def __init__(self, db, key, period):
        self.db, self.name, self.period = db, key_hash(key), period
        self._lock = db._locked()
        self._lock.__enter__()
        try:
            self._entries = db._load()
            self.fresh = self._entries.get(self.name, 0) <= int(db.clock())
        except BaseException:
            self._lock.__exit__(None, None, None)
            raise
        self._held = True

    def record(self):
        """Remember key (when it was fresh), then release the lock. Called after
        the send: a crash before this costs one extra copy on the retry, never the
        message (see the module docstring)."""
        try:
            if self.fresh and self._held:
                self._entries[self.name] = int(self.db.clock()) + max(int(self.period), 1)
                self.db._store(self._entries)
        finally:
            self.release()

    def release(self):
        """Let the lock go without remembering anything (the send failed, or key
        was not fresh). Idempotent."""
        if self._held:
            self._held = False
            self._lock.__exit__(None, None, None)

    def __enter__(self):
        return self.fresh

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.record()
        else:
            self.release()
        return False


class _FileLock:
    """An exclusive fcntl lock on path, waited for at most LOCK_TIMEOUT seconds."""

    def __init__(self, path):
        self.path = path
        self.fd = None

    def __enter__(self):
        import fcntl
        # Threads first: a second fcntl lock in the same process always succeeds
        # (and a close releases the process's lock), so it cannot keep threads apart.
        self.thread_lock = _thread_lock(self.path)
        if not self.thread_lock.acquire(timeout=LOCK_TIMEOUT):
            raise DuplicateDBError(f"timed out waiting for the lock {self.path}")
        try:
            return self._lock_file(fcntl)
        except BaseException:
            self.thread_lock.release()
            raise

    def _lock_file(self, fcntl):
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise DuplicateDBError(f"cannot open {self.path}: {exc.strerror}") from None
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return self
            except OSError:
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    raise DuplicateDBError(f"timed out waiting for the lock {self.path}") \
                        from None
                time.sleep(_LOCK_POLL)

    def __exit__(self, *exc):
        try:
            if self.fd is not None:
                os.close(self.fd)     # closing releases the fcntl lock
                self.fd = None
        finally:
            self.thread_lock.release()
        return False


_THREAD_LOCKS = {}


def _thread_lock(path):
    """The one threading.Lock of this process for path (made on first use)."""
    import threading
    with _GUARD[0] if _GUARD else _make_guard(threading):
        lock = _THREAD_LOCKS.get(path)
        if lock is None:
            lock = _THREAD_LOCKS[path] = threading.Lock()
        return lock


_GUARD = []


def _make_guard(threading):
    # Module import stays free of threading; the guard is made once, under the GIL
    # (list.append is atomic, so two first callers agree on _GUARD[0]).
    _GUARD.append(threading.Lock())
    return _GUARD[0]


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def for_home(home, *, clock=time.time):
    """The user's database in their home directory."""
    return DuplicateDB(os.path.join(home, DEFAULT_NAME), clock=clock)
