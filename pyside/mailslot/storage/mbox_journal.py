"""The append journal of one mbox: an interrupted append is rolled back next time.

    journal = MboxJournal(dir_fd, dir_path, fsync=True)   # opened under the mbox lock
    notes = journal.recover(mbox_fd)      # roll back what a killed delivery left
    journal.begin(mbox_fd, length, from_offset, total, prefix)  # durable first
    ... append total bytes, fdatasync the mbox ...
    journal.end()                          # the append is whole: forget it

While an append is in flight the journal holds one record: the mbox's inode, its
length before the append, where our From_ line starts, how many bytes the append
writes in all ("-" when the writer streams a large message and does not know yet)
and the first of them (up to PREFIX_MAX). The record is fdatasync()ed before the
first byte reaches the mbox, so after SIGKILL, a crash or a power loss the next
delivery to the mbox -- holding the same write lock -- finds it and decides:
  - the mbox is another file now, or shorter than the recorded length, or its
    bytes at the recorded place are not ours: the mbox was rewritten since
    (Dovecot's IMAP wrote its X-UID/Status fields into every message, or
    expunged): mbox_heal looks for the cut message wherever it went and takes it
    out; a whole one is kept (see the next rule);
  - the append is all there: it is kept. It may never have been confirmed to the
    MTA (then the MTA delivers again: a duplicate, never a loss), and a clear that
    a power loss undid must not take back mail that was confirmed. With the total
    unknown, whatever is there is taken back: such a writer makes its clear
    durable (end(durable=True)) before it confirms anything;
  - the append is cut short and is the tail of the mbox: the mbox is truncated
    back to the recorded length and fsync()ed -- only whole messages remain;
  - it is cut short and another writer appended after it (a line starting with
    "From " inside our recorded span: our own bytes never contain one, see
    mbox_format): our cut bytes are taken out and that writer's mail moved down,
    crash-safely (mbox_heal.remove).
A record that is not complete (the crash hit the journal write itself) means the
mbox was not touched yet: it is dropped. These decisions are mbox_recover.py's
(and mbox_heal.py's), imported only when a record is found. The clear after a successful append
needs no fsync when the total was recorded, by the second rule.

The journal lives in the mailbox's Dovecot index directory (".imap", a name Dovecot
never lists as a mailbox), not beside the mbox: /var/mail is not writable by the
user, and any other file beside an mbox would show up as a mailbox in Dovecot.

Errors: OSError, for the caller to turn into a StorageError with the path.

Security: the journal is opened with O_NOFOLLOW below a directory walked without
following symlinks; its content is only trusted after checking it against the
mbox itself, so a forged record can at worst roll back bytes that are ours.
"""

import os

JOURNAL_NAME = "mailslot-journal"
JOURNAL_MAGIC = b"mailslot-mbox-journal 1\n"
# How many of our first bytes are recorded: the From_ line and the start of the
# headers, enough that another message at the same offset cannot look like ours.
PREFIX_MAX = 512
# The journal file is one record of RECORD_SIZE bytes (magic, a line of numbers, the
# prefix, NUL padding), always overwritten in place: once the file has that size,
# an fdatasync() of a new record flushes one data block and no metadata. Idle, it
# starts with NUL bytes (the magic wiped).
RECORD_SIZE = 1024


class JournalRecord:
    __slots__ = ("ino", "length", "from_offset", "total", "prefix", "meta")

    def __init__(self, ino, length, from_offset, total, prefix, meta=None):
        self.ino, self.length, self.from_offset = ino, length, from_offset
        self.total, self.prefix = total, prefix
        # Bytes of mbox metadata fields (Status, X-Keywords...) in the append, for
        # mbox_heal to tell a cut append from a whole one; None in older records.
        self.meta = meta

    @property
    def end(self):
        """Where the append ends when it is whole (None: not recorded)."""
        return None if self.total is None else self.length + self.total

    def encode(self):
        total = "-" if self.total is None else self.total
        meta = "" if self.meta is None else f" {self.meta}"
        head = (f"{self.ino} {self.length} {self.from_offset} {total} "
                f"{len(self.prefix)}{meta}\n")
        return JOURNAL_MAGIC + head.encode("ascii") + self.prefix


def is_idle(data):
    """True for a journal holding no record (new, or wiped after an append)."""
    return data == b"" or data[:1] == b"\0"


def parse_record(data):
    """The JournalRecord in data, or None if there is none or it is incomplete."""
    if not data.startswith(JOURNAL_MAGIC):
        return None
    rest = data[len(JOURNAL_MAGIC):RECORD_SIZE]
    line, nl, rest = rest.partition(b"\n")
    fields = line.split(b" ")
    if not nl or len(fields) not in (5, 6):
        return None
    known = fields[3] != b"-"
    if not all(f.isdigit() for i, f in enumerate(fields) if known or i != 3):
        return None
    ino, length, from_offset, count = (int(fields[i]) for i in (0, 1, 2, 4))
    total = int(fields[3]) if known else None
    meta = int(fields[5]) if len(fields) == 6 else None
    prefix = rest[:count]
    if (count != len(prefix) or count > PREFIX_MAX or from_offset < length
            or (known and from_offset + count > length + total)):
        return None
    return JournalRecord(ino, length, from_offset, total, prefix, meta)


class MboxJournal:
    """The journal file of one mbox, open for reading and writing."""

    def __init__(self, dir_fd, dir_path, *, fsync, mode=0o600):
        self.path = f"{dir_path}/{JOURNAL_NAME}"
        self.fsync = fsync
        self.dir_fd = dir_fd        # the caller's; mbox_heal keeps its side file there
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
        try:
            self.fd = os.open(JOURNAL_NAME, flags | os.O_CREAT | os.O_EXCL, mode,
                              dir_fd=dir_fd)
            created = True
        except FileExistsError:
            self.fd = os.open(JOURNAL_NAME, flags, dir_fd=dir_fd)
            created = False
        try:
            st = os.fstat(self.fd)
            if (st.st_mode & 0o170000) != 0o100000 or st.st_nlink != 1:
                raise OSError(40, "not a regular file with one link", self.path)
            if created:
                if (st.st_mode & 0o777) != mode:
                    os.fchmod(self.fd, mode)
                if fsync:
                    # Why: the journal's name must be on disk before any append
                    # relies on it, or a crash could lose the record with it.
                    os.fsync(dir_fd)
        except BaseException:
            self.close()
            raise
        self.active = False

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)

    def read(self):
        data = os.pread(self.fd, RECORD_SIZE, 0)
        return data, parse_record(data)

    def recover(self, mbox_fd):
        """Settle a record an earlier delivery left; return notes for the log."""
        data = os.pread(self.fd, RECORD_SIZE, 0)
        if is_idle(data):
            return []
        # Imported here: only after an interrupted delivery (mbox_recover.py).
        from .mbox_recover import recover
        notes = recover(self, data, parse_record(data), mbox_fd)
        self.clear()
        return notes

    def begin(self, mbox_fd, length, from_offset, total, prefix, meta=0):
        """Record an append of total bytes (None: not known) at length, meta of
        them metadata fields; durable before returning."""
        ino = os.fstat(mbox_fd).st_ino
        record = JournalRecord(ino, length, from_offset, total, prefix[:PREFIX_MAX],
                               meta).encode()
        self.write_raw(record)
        self.active = True

    def write_raw(self, record):
        """Overwrite the record in place with record's bytes; durable."""
        record = record.ljust(RECORD_SIZE, b"\0")
        view = memoryview(record)
        offset = 0
        while offset < len(record):
            offset += os.pwrite(self.fd, view[offset:], offset)
        if self.fsync:
            # Why: the record must be on disk before the first appended byte can be.
            os.fdatasync(self.fd)

    def end(self, durable=False):
        """The append is whole and durable: forget it. durable: make the clear
        durable too (needed when the total was not recorded, see above)."""
        self.clear()
        if durable and self.fsync:
            os.fdatasync(self.fd)

    def clear(self):
        """Wipe the record in place (its magic), leaving the file's size alone."""
        os.pwrite(self.fd, b"\0" * len(JOURNAL_MAGIC), 0)
        self.active = False
