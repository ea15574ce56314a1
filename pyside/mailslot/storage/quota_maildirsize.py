"""Maildir++ `maildirsize`: the user's usage, kept current so checking it is cheap.

    ms = MaildirSize(control_dir, count=lambda: (bytes, messages), clock=time.time)
    with ms.locked():                        # shared lock for a save
        usage = ms.refresh(limits)          # Usage(bytes, count, bytes_limit, count_limit)
        ... save the message ...
        ms.append(size, 1)                  # one "<bytes> <count>\\n" line, O_APPEND
    ms.recalculate(limits)                  # `mailslot quota recalc`

The file (in the Maildir's control directory, beside dovecot-uidlist) is the one
Courier and Dovecot's `quota = maildir` keep: a first line of limits ("1048576S",
"10000C", "1048576S,10000C"; "0S" for none), then lines of "<bytes> <messages>"
whose sums are the usage. A delivery appends one line with O_APPEND (a single
write of a whole line). It is recalculated from the mailboxes -- each message file
counted once, its size from ",S=<n>" in its name or else from stat, as Dovecot
does -- when Dovecot would (tests/quota/test_maildirsize.py checks each case
against Dovecot 2.3): the file is missing, empty or unreadable; 5120 bytes or
larger (RECALC_SIZE); a line does not parse or the sums are negative; the limits
line differs from the configured limits (limits=None: the file's limits are used,
as Dovecot does when no default quota rule is set); or the usage is over a limit
and the file is more than the recalculated line (deltas may be stale) or older
than 15 minutes (STALE_SECS). mailslot also recalculates a file whose last line
is cut (no newline): Dovecot would append after the cut and merge two lines.

Concurrency: a delivery holds a shared flock on the control directory from its
check to its append, a recalculation an exclusive one, so that no message is saved
while the mailboxes are being counted and no delta is appended to a file that is
about to be replaced (8 concurrent deliverers keep the sums equal to the real
usage: tests/quota/test_concurrency.py). The new file is written as Dovecot does:
into the dotlock file "maildirsize.lock" (O_EXCL), then renamed over maildirsize;
a lock file younger than LOCK_STALE_SECS means Dovecot (or another host) is
writing it, and the file is then not written this time (the counted usage is still
used). Dovecot takes no flock: a Dovecot process and mailslot can still race as two
Dovecot processes can (a delta lost until the next recalculation).

Errors: the usage must be known to check a quota: an unreadable mailbox or a lock
not had within LOCK_TIMEOUT is a StorageError (75). A failing append after the
save is not a delivery failure: the file is unlinked so that the next delivery
rebuilds it, and the caller logs the warning this returns.

Security: runs as the mail user. Every file is opened relative to the control
directory's descriptor with O_NOFOLLOW; the counting walks directories without
following symlinks; a file read is at most RECALC_SIZE bytes.
"""

import os
import time

from ..errors import StorageError

FILE_NAME = "maildirsize"
LOCK_NAME = "maildirsize.lock"
# Dovecot (quota-maildir.c): a file this large is rebuilt instead of read.
RECALC_SIZE = 5120
# Dovecot: an over-quota file older than this is not trusted.
STALE_SECS = 15 * 60
# Dovecot's dotlock settings for maildirsize.lock: stale after 30 s untouched.
LOCK_STALE_SECS = 30
# How long a delivery waits for the flock (a recalculation of a huge Maildir).
LOCK_TIMEOUT = 60
# Dovecot reads the deltas with "%lld %d".
_MAX_BYTES, _MAX_COUNT = 2 ** 63 - 1, 2 ** 31 - 1


class Usage:
    """What the user uses and may use; 0 limits mean none."""

    __slots__ = ("bytes", "count", "bytes_limit", "count_limit", "recalculated")

    def __init__(self, bytes, count, bytes_limit, count_limit, recalculated=False):
        self.bytes, self.count = bytes, count
        self.bytes_limit, self.count_limit = bytes_limit, count_limit
        self.recalculated = recalculated

    def __repr__(self):
        return (f"Usage({self.bytes}, {self.count}, limits={self.bytes_limit}S,"
                f"{self.count_limit}C)")


def format_limits(bytes_limit, count_limit):
    """The first line as Dovecot writes it."""
    parts = []
    if bytes_limit or not count_limit:
        parts.append(f"{bytes_limit}S")
    if count_limit:
        parts.append(f"{count_limit}C")
    return ",".join(parts)


def parse_limits(line):
    """(bytes, count) of a limits line; items that do not parse are ignored (as
    Dovecot's maildir_parse_limit, whose caller ignores its failure)."""
    bytes_limit = count_limit = 0
    for item in line.split(","):
        digits = len(item) - len(item.lstrip("0123456789"))
        if not digits or len(item) != digits + 1 or int(item[:digits]) > _MAX_BYTES:
            continue
        value = int(item[:digits])
        if item[-1] == "S" and value:
            bytes_limit = value
        elif item[-1] == "C" and value:
            count_limit = value
    return bytes_limit, count_limit


def _scan_int(text, pos):
    """C's %d at pos: skip white space, optional sign, digits. (value, end) or None."""
    n = len(text)
    while pos < n and text[pos] in " \t\r\f\v":
        pos += 1
    start = pos
    if pos < n and text[pos] in "+-":
        pos += 1
    digits = pos
    while pos < n and "0" <= text[pos] <= "9":
        pos += 1
    if pos == digits:
        return None
    return int(text[start:pos]), pos


def parse_delta(line):
    """(bytes, count) of a delta line as sscanf("%lld %d") reads it, or None.
    A number out of those C types' range is None here (Dovecot would wrap it)."""
    first = _scan_int(line, 0)
    if first is None:
        return None
    second = _scan_int(line, first[1])
    if second is None:
        return None
    if abs(first[0]) > _MAX_BYTES or abs(second[0]) > _MAX_COUNT:
        return None
    return first[0], second[0]


def parse_file(data):
    """(limits, bytes, count, delta lines) of a maildirsize's contents, or None
    when the file must be recalculated (empty, a line that does not parse,
    negative sums, a cut last line)."""
    if not data.endswith(b"\n"):
        return None
    lines = data[:-1].decode("ascii", "replace").split("\n")
    limits = parse_limits(lines[0])
    total_bytes = total_count = 0
    for line in lines[1:]:
        delta = parse_delta(line)
        if delta is None:
            return None
        total_bytes += delta[0]
        total_count += delta[1]
    if total_bytes < 0 or total_count < 0:
        return None
    return limits, total_bytes, total_count, len(lines) - 1


class MaildirSize:
    """The maildirsize file of one Maildir (its control directory)."""

    def __init__(self, control_dir, *, count, clock=time.time, file_mode=0o600):
        self.control_dir = control_dir
        self.count = count              # () -> (bytes, messages), the real usage
        self.clock = clock
        self.file_mode = file_mode
        self._dir_fd = None
        self._fd = None                 # the maildirsize read under the lock

    # -- the lock --------------------------------------------------------------------

    def locked(self, exclusive=False):
        return _Locked(self, exclusive)

    def _open_dir(self):
        try:
            self._dir_fd = os.open(self.control_dir,
                                   os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise StorageError(f"quota: cannot open {self.control_dir}: "
                               f"{exc.strerror}") from None

    def _flock(self, how):
        import fcntl
        deadline = time.monotonic() + LOCK_TIMEOUT
        delay = 0.002
        while True:
            try:
                fcntl.flock(self._dir_fd, how | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise StorageError(f"quota: {self.control_dir}: timed out waiting "
                                       "for the maildirsize lock") from None
                time.sleep(delay)
                delay = min(delay * 2, 0.05)

    def _close(self):
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._dir_fd is not None:
            os.close(self._dir_fd)        # closing the last fd drops the flock
            self._dir_fd = None

    # -- reading ---------------------------------------------------------------------

    def _read(self):
        """(fd, parsed or None, mtime) of the current file; fd None when missing."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        try:
            # O_NONBLOCK: a FIFO or device planted under the name cannot hold the
            # delivery (it is not a regular file: rebuilt, replaced by the rename).
            fd = os.open(FILE_NAME, os.O_RDWR | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC
                         | os.O_NONBLOCK, dir_fd=self._dir_fd)
        except OSError:
            # Missing, or not a file we can use: recalculated (and rewritten
            # when the rename can replace it); the count is used either way.
            return None, None, 0
        try:
            st = os.fstat(fd)
            if (st.st_mode & 0o170000) != 0o100000:
                os.close(fd)
                return None, None, 0
        except OSError:
            os.close(fd)
            return None, None, 0
        self._fd = fd
        try:
            data = b""
            while len(data) < RECALC_SIZE:
                chunk = os.read(fd, RECALC_SIZE - len(data))
                if not chunk:
                    break
                data += chunk
        except OSError:
            return fd, None, 0
        if len(data) >= RECALC_SIZE:
            return fd, None, st.st_mtime
        return fd, parse_file(data), st.st_mtime

    def _trusted(self, parsed, mtime, limits):
        """The Usage the parsed file gives, or None when it must be recalculated."""
        if parsed is None:
            return None
        (file_bytes, file_count), total_bytes, total_count, deltas = parsed
        if limits is None:
            limits = (file_bytes, file_count)
        elif limits != (file_bytes, file_count):
            return None                         # the limits changed: rewrite
        bytes_limit, count_limit = limits
        if (bytes_limit and total_bytes > bytes_limit) or \
                (count_limit and total_count > count_limit):
            # Over quota: trust only a freshly recalculated file (Dovecot).
            if deltas > 1 or mtime < self.clock() - STALE_SECS:
                return None
        return Usage(total_bytes, total_count, bytes_limit, count_limit)

    def refresh(self, limits):
        """The Usage, from the file or recalculated; limits (bytes, count) are
        the configured ones, None to use the file's. Call it under locked()."""
        import fcntl
        counted = None
        for _attempt in range(3):
            # Read under the shared lock: no rebuild can replace this file until
            # the save and its delta are done.
            _fd, parsed, mtime = self._read()
            usage = self._trusted(parsed, mtime, limits)
            if usage is not None:
                usage.recalculated = counted is not None
                return usage
            self._flock(fcntl.LOCK_UN)
            try:
                counted = self._rebuild(limits)
            finally:
                # Not atomic (flock): the file is read again above under it.
                self._flock(fcntl.LOCK_SH)
        # The file could not be written (read-only, or always someone else's
        # turn): the count stands, and no delta goes to a file that would lie.
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        return counted

    def recalculate(self, limits):
        """Count the mailboxes and write the file now (`mailslot quota recalc`)."""
        import fcntl
        with self.locked():
            self._flock(fcntl.LOCK_UN)
            return self._rebuild(limits, force=True)

    # -- writing ---------------------------------------------------------------------

    def _rebuild(self, limits, force=False):
        """Recalculate under the dotlock and the exclusive flock; return the Usage.
        Called holding no flock; returns holding the exclusive one."""
        import fcntl
        deadline = time.monotonic() + LOCK_TIMEOUT
        while True:
            lock_fd = self._take_dotlock()
            if lock_fd is not None:
                break
            # Someone else is rebuilding it: wait, then use what they wrote.
            self._wait_for_writer()
            self._flock(fcntl.LOCK_SH)
            _fd, parsed, mtime = self._read()
            usage = self._trusted(parsed, mtime, limits)
            self._flock(fcntl.LOCK_UN)
            if usage is not None and not force:
                self._flock(fcntl.LOCK_EX)
                # Why read again: no lock was held since the read above, and a
                # rebuild may have replaced the file meanwhile; a delta written
                # to the old inode would be lost (the file one message short).
                _fd, parsed, mtime = self._read()
                usage = self._trusted(parsed, mtime, limits)
                if usage is not None:
                    return usage
                self._flock(fcntl.LOCK_UN)
            if time.monotonic() > deadline:
                lock_fd = -1            # count, but leave the file to them
                break
        owned, replaced = lock_fd >= 0, False
        try:
            # Why exclusive: no save may land while the mailboxes are counted, and
            # no delta may go to the file that is about to be replaced. Deliveries
            # that come meanwhile wait for the dotlock to go (locked()), so this
            # wait ends when the saves already under way are done.
            self._flock(fcntl.LOCK_EX)
            _fd, parsed, mtime = self._read()     # someone may have just done it
            usage = None if force else self._trusted(parsed, mtime, limits)
            if usage is not None:
                return usage
            if limits is None:
                limits = parsed[0] if parsed is not None else (0, 0)
            total_bytes, total_count = self.count()
            body = f"{format_limits(*limits)}\n{total_bytes} {total_count}\n"
            if lock_fd >= 0:
                replaced = self._replace(lock_fd, body.encode("ascii"))
                lock_fd = -1
            self._read()            # the new file is the one deltas go to
            return Usage(total_bytes, total_count, limits[0], limits[1],
                         recalculated=True)
        finally:
            if lock_fd >= 0:
                os.close(lock_fd)
            if owned and not replaced:
                self._drop_dotlock()

    def _take_dotlock(self):
        """Create maildirsize.lock (Dovecot's dotlock for this file): its fd; None
        while a fresh one exists (someone else writes); -1 when it cannot be made
        (a read-only Maildir: the count is used, nothing written)."""
        for _attempt in range(2):
            try:
                return os.open(LOCK_NAME, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                               | os.O_CLOEXEC, self.file_mode, dir_fd=self._dir_fd)
            except FileExistsError:
                if not self._remove_stale_lock():
                    return None
            except OSError:
                return -1
        return None

    def _drop_dotlock(self):
        _unlink_quietly(LOCK_NAME, self._dir_fd)

    def _replace(self, fd, body):
        """Write body into the dotlock file and rename it over maildirsize."""
        try:
            try:
                os.fchmod(fd, self.file_mode)
                written = os.write(fd, body)
            finally:
                os.close(fd)
            if written != len(body):
                raise OSError("short write")
            # Why a rename: readers see the old file or the new one, never half.
            os.rename(LOCK_NAME, FILE_NAME, src_dir_fd=self._dir_fd,
                      dst_dir_fd=self._dir_fd)
            return True
        except OSError:
            return False

    def _wait_for_writer(self):
        """Wait while a fresh dotlock says a rebuild is under way (at most
        LOCK_TIMEOUT): a delivery does not start a save meanwhile, so the
        rebuild's exclusive lock is not starved by a stream of saves."""
        deadline = time.monotonic() + LOCK_TIMEOUT
        delay = 0.002
        while time.monotonic() < deadline:
            try:
                st = os.stat(LOCK_NAME, dir_fd=self._dir_fd, follow_symlinks=False)
            except OSError:
                return
            if st.st_mtime <= self.clock() - LOCK_STALE_SECS:
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def _remove_stale_lock(self):
        try:
            st = os.stat(LOCK_NAME, dir_fd=self._dir_fd, follow_symlinks=False)
        except FileNotFoundError:
            return True
        except OSError:
            return False
        if st.st_mtime > self.clock() - LOCK_STALE_SECS:
            return False
        _unlink_quietly(LOCK_NAME, self._dir_fd)
        return True

    def append(self, size, count):
        """Add one "<bytes> <count>" line; return a warning text or None.

        Why one write of the whole line with O_APPEND: concurrent deliveries'
        lines never interleave. A write that fails or is cut leaves a file that
        would lie: it is unlinked, and the next delivery rebuilds it."""
        if self._fd is None or (size == 0 and count == 0):
            return None
        line = f"{size} {count}\n".encode("ascii")
        try:
            written = os.write(self._fd, line)
            if written == len(line):
                return None
            reason = "short write"
        except OSError as exc:
            reason = exc.strerror
        _unlink_quietly(FILE_NAME, self._dir_fd)
        return (f"quota: cannot append to {self.control_dir}/{FILE_NAME} ({reason}): "
                "removed, it will be recalculated")


class _Locked:
    def __init__(self, ms, exclusive):
        self.ms, self.exclusive = ms, exclusive

    def __enter__(self):
        import fcntl
        self.ms._open_dir()
        try:
            self.ms._wait_for_writer()
            self.ms._flock(fcntl.LOCK_EX if self.exclusive else fcntl.LOCK_SH)
        except BaseException:
            self.ms._close()
            raise
        return self.ms

    def __exit__(self, *exc):
        self.ms._close()
        return False


def _unlink_quietly(name, dir_fd):
    try:
        os.unlink(name, dir_fd=dir_fd)
    except OSError:
        pass


# -- counting the mailboxes ------------------------------------------------------------

def sum_maildir(path):
    """(bytes, messages) of one Maildir's new/ and cur/: each file not starting
    with '.', its size from ",S=<n>" in the name (followed by ':', ',' or the
    end), else from lstat, as Dovecot's maildir_sum_dir."""
    total_bytes = total_count = 0
    for sub in ("new", "cur"):
        try:
            entries = os.scandir(f"{path}/{sub}")
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise StorageError(f"quota: cannot list {path}/{sub}: {exc.strerror}") from None
        with entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                size = _size_from_name(name)
                if size is None:
                    try:
                        size = entry.stat(follow_symlinks=False).st_size
                    except FileNotFoundError:
                        continue            # expunged meanwhile
                    except OSError as exc:
                        raise StorageError(f"quota: cannot stat {path}/{sub}/{name}: "
                                           f"{exc.strerror}") from None
                total_bytes += size
                total_count += 1
    return total_bytes, total_count


def _size_from_name(name):
    at = name.find(",S=")
    if at < 0:
        return None
    start = end = at + 3
    while end < len(name) and "0" <= name[end] <= "9":
        end += 1
    if end < len(name) and name[end] not in ":,":
        return None
    return int(name[start:end] or "0")
