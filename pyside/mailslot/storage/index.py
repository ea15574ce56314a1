"""dovecot-uidlist (version 3) and dovecot-uidvalidity, kept as Dovecot keeps them.

A Maildir's IMAP UIDs live in dovecot-uidlist, in the mailbox's control directory:

    3 V<uidvalidity> N<next uid> G<mailbox guid, 32 hex digits>
    <uid> [<key><value> ...] :<file base name, without the ":2,<flags>" part>

(src/lib-storage/index/maildir/maildir-uidlist.c). UIDs increase line by line. A
delivery appends one line while it holds the dotlock dovecot-uidlist.lock; the
header's N is not rewritten on append -- the next UID is max(N, last UID + 1), as
Dovecot computes it. When the file is missing it is created the way Dovecot
creates it: the files already in new/ and cur/ first (in Maildir name order), a
UIDVALIDITY from dovecot-uidvalidity, a random 128-bit mailbox GUID, written to
dovecot-uidlist.tmp and renamed into place.

The UIDVALIDITY of a new list comes from dovecot-uidvalidity (storage/uidvalidity.py,
imported only then: a delivery into an existing list never needs it).

Errors: OSError passes up to the storage, which names the path; an append is all or
nothing (append_records truncates a short or failed one back). A uidlist that
cannot be used (unknown version, garbage, UIDs exhausted) is reported as
UidlistState.unusable: the message is then saved without a UID, and Dovecot
rebuilds the list at its next sync -- the mail is never refused for it.

Security: every file is opened relative to a directory fd with O_NOFOLLOW.
"""

import os

UIDLIST_NAME = "dovecot-uidlist"
UIDLIST_TEMP_NAME = "dovecot-uidlist.tmp"
UIDLIST_VERSION = 3
# Dovecot's MAILDIR_UIDLIST_LOCK_STALE_TIMEOUT (maildir-uidlist.h): 2 minutes.
UIDLIST_LOCK_STALE_TIMEOUT = 120
# UIDs are 32-bit and (uint32_t)-1 is refused by Dovecot ("UID too high").
UID_MAX = 0xFFFFFFFE
# How much of the uidlist's end is read to find the last line (doubled as needed).
UIDLIST_TAIL_CHUNK = 8192
# The account's UIDVALIDITY counter (storage/uidvalidity.py, imported only when a
# mailbox gets its first uidlist); named here, where the Maildir code lists the
# control files it reserves.
UIDVALIDITY_NAME = "dovecot-uidvalidity"
# Mailbox GUIDs are 128-bit (Dovecot's guid_128_t).
GUID_BYTES = 16

_OPEN_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


class UidlistHeader:
    """The first line of a dovecot-uidlist."""

    __slots__ = ("version", "uid_validity", "next_uid", "guid", "extensions")

    def __init__(self, uid_validity, next_uid, guid, *, version=UIDLIST_VERSION, extensions=""):
        self.version, self.uid_validity, self.next_uid = version, uid_validity, next_uid
        self.guid, self.extensions = guid, extensions

    def format(self):
        line = f"{self.version} V{self.uid_validity} N{self.next_uid} G{self.guid}"
        if self.extensions:
            line += " " + self.extensions
        return line + "\n"


def new_mailbox_guid():
    """A fresh random mailbox GUID, as 32 lowercase hex digits."""
    return os.urandom(GUID_BYTES).hex()


def parse_header(line):
    """Parse a version 3 header line; return UidlistHeader, or None if unusable."""
    line = line.rstrip("\n")
    if len(line) < 2 or not line[0].isdigit() or line[1] != " ":
        return None
    version = int(line[0])
    if version != UIDLIST_VERSION:
        return None
    uid_validity = next_uid = 0
    guid = None
    extra = []
    for field in line[2:].split(" "):
        if field == "":
            continue
        key, value = field[0], field[1:]
        if key in "VN":
            if not value.isdigit() or int(value) > 0xFFFFFFFF:
                return None
            if key == "V":
                uid_validity = int(value)
            else:
                next_uid = int(value)
        elif key == "G":
            if len(value) != 2 * GUID_BYTES or any(c not in "0123456789abcdefABCDEF" for c in value):
                return None
            guid = value.lower()
        else:
            extra.append(field)
    if uid_validity == 0 or next_uid == 0:
        return None
    return UidlistHeader(uid_validity, next_uid, guid, extensions=" ".join(extra))


def format_record(uid, basename, extensions=()):
    """One uidlist line: "<uid> [<key><value> ...] :<base name>\\n"."""
    base = basename.partition(":")[0]
    if "/" in base or "\n" in base or base == "":
        raise ValueError(f"bad maildir file name for the uidlist: {basename!r}")
    fields = "".join(" " + ext for ext in extensions)
    return f"{uid}{fields} :{base}\n"


def parse_record(line):
    """Parse a record line into (uid, extensions list, file name); None if broken."""
    head, sep, filename = line.rstrip("\n").partition(" ")
    if not sep or not head.isdigit():
        return None
    exts = []
    rest = filename.lstrip(" ")
    while rest and rest[0] != ":":
        field, _, rest = rest.partition(" ")
        if not "A" <= field[0] <= "Z":
            return None
        exts.append(field)
        rest = rest.lstrip(" ")
    if not rest.startswith(":") or len(rest) < 2 or "/" in rest:
        return None
    uid = int(head)
    if uid == 0 or uid > UID_MAX:
        return None
    return uid, exts, rest[1:]


def read_uidlist(dir_fd, name=UIDLIST_NAME):
    """Read a whole uidlist: (UidlistHeader, [(uid, exts, filename), ...]), or None.

    None when the file does not exist. ValueError when it is not a valid version 3
    list with increasing UIDs. For tools and tests; a delivery reads only the ends.
    """
    try:
        fd = os.open(name, os.O_RDONLY | _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    with os.fdopen(fd, "r", encoding="utf-8", errors="surrogateescape", newline="\n") as f:
        header = parse_header(f.readline())
        if header is None:
            raise ValueError(f"{name}: bad or unsupported header")
        records = []
        prev = 0
        for line in f:
            if not line.endswith("\n"):
                break               # a partial last line is not a record (as Dovecot)
            rec = parse_record(line)
            if rec is None or rec[0] <= prev:
                raise ValueError(f"{name}: broken record: {line.rstrip()!r}")
            prev = rec[0]
            records.append(rec)
    return header, records


class UidlistState:
    """A mailbox's dovecot-uidlist as seen under its lock, ready for appending.

    status is "ok" (next_uid set, fd open for appending), "missing" (to be
    created) or "unusable" (reason says why; save without UIDs).
    """

    def __init__(self, status, *, fd=None, next_uid=None, reason=None, end=None):
        self.status, self.fd, self.next_uid, self.reason = status, fd, next_uid, reason
        self.end = end          # "ok": the length seen (and kept) under the lock

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)


def _last_record_uid(fd, header_end, size):
    """Return (uid of the last complete record or 0, offset just after it).

    Reads the file's end only. A partial last line (a crash mid-append) ends at
    the returned offset, which is before it. None if the last record is garbage.
    """
    chunk = UIDLIST_TAIL_CHUNK
    while True:
        start = max(header_end, size - chunk)
        data = os.pread(fd, size - start, start)
        end = data.rfind(b"\n")
        if end < 0:
            if start == header_end:
                return 0, header_end       # no complete record at all
            chunk *= 2
            continue
        begin = data.rfind(b"\n", 0, end)
        if begin < 0 and start != header_end:
            chunk *= 2
            continue
        line = data[begin + 1:end + 1].decode("utf-8", "surrogateescape")
        rec = parse_record(line)
        if rec is None:
            return None
        return rec[0], start + end + 1


def inspect_uidlist(dir_fd):
    """Open the uidlist for appending (caller holds the lock); return UidlistState."""
    try:
        fd = os.open(UIDLIST_NAME, os.O_RDWR | _OPEN_FLAGS, dir_fd=dir_fd)
    except FileNotFoundError:
        return UidlistState("missing")
    try:
        size = os.fstat(fd).st_size
        if size == 0:
            # Dovecot treats an empty list as broken and recreates it.
            os.close(fd)
            return UidlistState("missing")
        head = os.pread(fd, min(size, UIDLIST_TAIL_CHUNK), 0)
        nl = head.find(b"\n")
        header = parse_header(head[:nl].decode("utf-8", "replace")) if nl >= 0 else None
        if header is None:
            os.close(fd)
            return UidlistState("unusable", reason="dovecot-uidlist has a bad or unsupported header")
        last = _last_record_uid(fd, nl + 1, size)
        if last is None:
            os.close(fd)
            return UidlistState("unusable", reason="dovecot-uidlist ends in a broken record")
        last_uid, good_end = last
        if good_end < size:
            # Why truncate: appending after a partial line would glue our record
            # to it, and Dovecot would then discard the whole list as corrupt.
            os.ftruncate(fd, good_end)
        next_uid = max(header.next_uid, last_uid + 1)
        if next_uid > UID_MAX:
            os.close(fd)
            return UidlistState("unusable", reason="UIDs exhausted in dovecot-uidlist")
        return UidlistState("ok", fd=fd, next_uid=next_uid, end=good_end)
    except BaseException:
        try:
            os.close(fd)
        except OSError:
            pass
        raise


def append_records(state, basenames, *, fsync):
    """Append one record per base name to an "ok" state; return the first UID.

    All or nothing: a short write (RLIMIT_FSIZE, a disk full at a block boundary) or
    a failed write or sync truncates the file back to its old length before the
    OSError passes up -- a fragment left behind would have Dovecot append its own
    record to it and number the message anew (issue 21.2). If even the truncation
    fails, the error says so (the next append's inspect_uidlist cuts the partial
    line).
    """
    first = state.next_uid
    if first + len(basenames) - 1 > UID_MAX:
        raise ValueError("UIDs exhausted")
    data = "".join(format_record(first + i, b) for i, b in enumerate(basenames))
    # Written at the end inspect_uidlist() saw, not after an lseek(SEEK_END): the
    # file cannot have grown since -- every writer of a uidlist (Dovecot, us) holds
    # its dotlock, which the caller has held since the inspection.
    old_end = end = state.end
    view = memoryview(data.encode("utf-8", "surrogateescape"))
    try:
        while view:
            written = os.pwrite(state.fd, view, end)
            if written <= 0:
                raise OSError(28, "short write to dovecot-uidlist")
            view = view[written:]
            end += written
        if fsync:
            # Why: the UID is promised to readers only once it is on disk.
            os.fdatasync(state.fd)
    except OSError as exc:
        try:
            # Why: take the partial record back, as mbox takes back a cut append.
            os.ftruncate(state.fd, old_end)
        except OSError as again:
            raise OSError(exc.errno, f"{exc.strerror or exc}; truncating the partial "
                          f"record back to {old_end} bytes failed too: "
                          f"{again.strerror or again}") from None
        raise OSError(exc.errno, f"{exc.strerror or exc} (the partial record was "
                      f"truncated back to {old_end} bytes)") from None
    state.next_uid = first + len(basenames)
    state.end = end
    return first


def write_new_uidlist(dir_fd, header, basenames, *, mode, fsync):
    """Create the uidlist: header + one record per base name (UIDs from header.next_uid).

    Written to dovecot-uidlist.tmp and renamed over dovecot-uidlist, so a reader
    never sees a half-written list. The caller holds the lock. Returns first UID.
    """
    first = header.next_uid
    data = header.format() + "".join(
        format_record(first + i, b) for i, b in enumerate(basenames))
    fd = os.open(UIDLIST_TEMP_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _OPEN_FLAGS,
                 mode, dir_fd=dir_fd)
    try:
        os.fchmod(fd, mode)
        raw = data.encode("utf-8", "surrogateescape")
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
        if fsync:
            # Why: the rename below must never expose a list whose data is not
            # on disk yet (Dovecot fdatasyncs it too).
            os.fdatasync(fd)
    except BaseException:
        os.close(fd)
        try:
            os.unlink(UIDLIST_TEMP_NAME, dir_fd=dir_fd)
        except OSError:
            pass
        raise
    os.close(fd)
    os.rename(UIDLIST_TEMP_NAME, UIDLIST_NAME, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    return first
