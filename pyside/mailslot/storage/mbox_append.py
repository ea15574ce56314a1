"""The mbox append: one message added to the end of a locked mbox, or nothing.

append() runs with the mbox's locks held (mbox_lock.py) and the append journal
open (mbox_journal.py): it repairs a missing blank line at the end of the mbox,
writes the From_ line and the message in its mbox form (mbox_format.py: forged
mbox metadata dropped, From_ lines quoted), fdatasync()s it and puts the atime
back. Up to IN_MEMORY_MAX the message is encoded into memory first, so the journal
records the append's whole length; a larger one is streamed and the journal's clear
is made durable before the save counts as done. The encoder's pieces (memoryviews
into the spool's chunks, where no line needed quoting) go out with writev(): a
large body is copied once, spool to mbox, not sliced and joined on the way.

Errors: StorageError for a file that is not an mbox (no From_ line at its start)
and for every OSError (named, via dirs.storage_error); any failure or signal
(mbox_lock.SignalGuard) truncates the mbox back to its old length and fsync()s it.

Security: the mbox fd was opened and checked by the caller (O_NOFOLLOW, a regular
file of ours with one link); nothing here opens a path.
"""

import os

from ..errors import StorageError
from .dirs import storage_error
from .mbox_format import MboxEncoder, from_line
from .mbox_journal import PREFIX_MAX

# One buffered write to the mbox.
COPY_CHUNK = 256 * 1024
# At most this many pieces go to one writev() (Linux's IOV_MAX is 1024); a chunk
# cut into more (a body of nothing but "From " lines) is joined first.
WRITEV_MAX = 64
# Messages up to this size are encoded into memory before the append (see
# append()); larger ones are streamed.
IN_MEMORY_MAX = 1024 * 1024


def append(locks, path, journal, spool, sender, extra, guard, *, variant, fsync, when=None):
    """Append the message; return the offset of its From_ line (dated when, default now).

    The message is encoded once. Up to IN_MEMORY_MAX it is encoded into memory
    first, so that the journal records the append's total length and a whole
    append survives any crash (mbox_journal). A larger one is streamed: the
    journal records no total, and its clear is made durable before the save
    counts as done -- one more fdatasync instead of a second encoding pass.
    """
    fd = locks.mbox_fd
    try:
        st = os.fstat(fd)
        length = st.st_size
        fix = _separator_fix(fd, length, path)
    except OSError as err:
        raise storage_error("reading", path, err) from None
    head = from_line(sender, when)
    pieces = _encoded(spool, extra, variant)
    if spool.size <= IN_MEMORY_MAX:
        taken = list(pieces)
        total = len(fix) + len(head) + sum(len(p) for p in taken)
    else:
        taken, got, total = [], len(head), None
        for piece in pieces:            # just enough for the journal's prefix
            taken.append(piece)
            got += len(piece)
            if got >= PREFIX_MAX:
                break
    prefix = (head + b"".join(taken[:PREFIX_MAX]))[:PREFIX_MAX]
    from_offset = length + len(fix)
    try:
        if journal is not None:
            journal.begin(fd, length, from_offset, total, prefix, meta=len(extra))
        writer = Writer(fd, locks)
        writer.write(fix + head)
        for piece in taken:
            writer.write(piece)
        for piece in pieces:
            writer.write(piece)
        written = writer.flush()
        if total is not None and written != total:
            raise StorageError(f"{path}: wrote {written} bytes of {total} (internal error)")
        if fsync:
            # Why: the MTA hears "delivered" only once the mail is on disk.
            os.fdatasync(fd)
        if journal is not None and total is None:
            # Why durable: a record without a total would take this message
            # back after a crash, and it is about to be confirmed.
            journal.end(durable=True)
    except BaseException as exc:
        guard.hold()
        _roll_back(fd, length, journal, fsync)
        if isinstance(exc, OSError):
            raise storage_error("writing", path, exc) from None
        raise
    # Committed: from here on a signal no longer takes the message back.
    guard.hold()
    if journal is not None and total is not None:
        try:
            journal.end()
        except OSError:
            pass        # a record of a whole append is harmless (mbox_journal)
    try:
        # Why: mail readers and shells announce new mail when mtime > atime.
        now = os.fstat(fd)
        os.utime(fd, ns=(st.st_atime_ns, now.st_mtime_ns))
    except OSError:
        pass
    return from_offset

def _encoded(spool, extra, variant):
    """The message's mbox form, piece by piece, ending with the blank line. The
    pieces are the encoder's (memoryviews into the spool's chunks where no line
    needed quoting): written as they are, not joined."""
    encoder = MboxEncoder(variant, extra)
    for chunk in spool.chunks():
        yield from encoder.feed_pieces(chunk)
    yield encoder.finish() + b"\n"

def _separator_fix(fd, length, path):
    """What must precede our From_ line: the mbox must end with a blank line."""
    if length == 0:
        return b""
    if os.pread(fd, 5, 0) != b"From ":
        raise StorageError(f"{path} is not an mbox file (it does not begin with a "
                           "From_ line): refusing to append to it")
    tail = os.pread(fd, 2, length - 2) if length >= 2 else b""
    if tail == b"\n\n":
        return b""
    return b"\n" if tail.endswith(b"\n") else b"\n\n"

def _roll_back(fd, length, journal, fsync):
    """Truncate back to length and make it durable; the journal follows."""
    try:
        # Why: nothing of a failed append may stay, and the cut must be on disk
        # before the journal forgets it.
        os.ftruncate(fd, length)
        if fsync:
            os.fsync(fd)
    except OSError:
        return          # the journal keeps the record: the next delivery cuts it
    if journal is not None:
        try:
            journal.clear()
        except OSError:
            pass


class Writer:
    """Buffered appends to the mbox; refreshes a dotlock on long writes."""

    def __init__(self, fd, locks):
        self.fd, self.locks = fd, locks
        self.pieces, self.pending, self.written = [], 0, 0

    def write(self, data):
        if data:
            self.pieces.append(data)
            self.pending += len(data)
            if self.pending >= COPY_CHUNK:
                self._drain()

    def _drain(self):
        pieces, self.pieces, self.pending = self.pieces, [], 0
        if len(pieces) > WRITEV_MAX:
            pieces = [b"".join(pieces)]
        # writev: the pieces go out without being joined (copied) first.
        while pieces:
            n = os.writev(self.fd, pieces)
            self.written += n
            while pieces and n >= len(pieces[0]):
                n -= len(pieces[0])
                pieces.pop(0)
            if n:
                pieces[0] = memoryview(pieces[0])[n:]
        self.locks.touch_if_due()

    def flush(self):
        if self.pieces:
            self._drain()
        return self.written
