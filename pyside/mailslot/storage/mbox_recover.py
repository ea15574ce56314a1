"""The next delivery's decision about an append an interrupted delivery left.

MboxJournal.recover (mbox_journal.py) reads the journal under the mbox's write lock;
when it holds something (a record, or mbox_heal's move record) it calls recover()
here, and clears the journal after. The rules are mbox_journal.py's docstring's:
a record whose append is all there is kept; one cut short at the mbox's end is
truncated away and fsync()ed; one cut short and followed by another writer's mail,
or in an mbox rewritten since (another inode, shorter, other bytes at the recorded
place), is taken out by mbox_heal.py; an incomplete record (the crash hit the
journal write) is dropped, the mbox was not touched yet. A plain delivery, whose
journal is idle, never imports this module.

Errors: OSError, for the caller to turn into a StorageError with the path.

Security: the record is only trusted after comparing it with the mbox itself (the
prefix of our own bytes at the recorded offset), so a forged record can at worst
take back bytes that are ours.
"""

import os

from . import mbox_heal

SCAN_CHUNK = 256 * 1024
_BOUNDARY = b"\nFrom "


def recover(journal, data, record, mbox_fd):
    """Settle journal's contents data (not idle; record: its parsed JournalRecord, or
    None) against mbox_fd; return notes for the log."""
    if data.startswith(mbox_heal.MOVE_MAGIC):
        return list(mbox_heal.redo_move(journal, data, mbox_fd))
    if record is None:
        return [f"{journal.path}: incomplete journal record dropped "
                "(the mbox had not been touched yet)"]
    return _settle(journal, record, mbox_fd)


def _settle(journal, record, mbox_fd):
    st = os.fstat(mbox_fd)
    size = st.st_size
    if st.st_ino != record.ino or size < record.length:
        return _heal(journal, record, mbox_fd, size, "replaced or rewritten")
    if size == record.length:
        return []           # nothing of the append reached the file
    # A boundary inside our span can only be another writer's message: our
    # bytes are only those before it (and before the newline it may have added).
    end = record.end if record.end is not None else size
    scan_end = min(size, end + len(_BOUNDARY) - 1)
    foreign = _find_boundary(mbox_fd, record.from_offset, scan_end)
    ours_end = size if foreign is None else foreign - 1
    count = max(0, min(len(record.prefix), ours_end - record.from_offset))
    have = os.pread(mbox_fd, count, record.from_offset) if count else b""
    if have != record.prefix[:count]:
        return _heal(journal, record, mbox_fd, size, "rewritten")
    if foreign is not None and (record.end is None or foreign < record.end):
        # Why: another program appended after our cut bytes; they are taken out
        # and its mail moved down, crash-safely (mbox_heal.remove).
        mbox_heal.remove(journal, mbox_fd, record.from_offset, foreign, size)
        return [f"took out an interrupted delivery ({foreign - record.from_offset} "
                f"bytes at offset {record.from_offset}) that mail from another "
                "program followed"]
    if record.end is not None and size >= record.end:
        return []           # whole: kept (see mbox_journal's docstring)
    # Why truncate and fsync: the interrupted append must vanish for good
    # before this delivery appends after the last whole message.
    os.ftruncate(mbox_fd, record.length)
    if journal.fsync:
        os.fsync(mbox_fd)
    return [f"rolled back an interrupted delivery: {size - record.length} bytes at "
            f"offset {record.length}"]


def _heal(journal, record, mbox_fd, size, how):
    """The mbox changed since the record: find the cut append and take it out."""
    found, why = mbox_heal.find_cut(mbox_fd, size, record)
    if found is None:
        return [f"{journal.path}: the mbox was {how} since an interrupted delivery; "
                f"nothing taken out ({why})"]
    start, end = found
    mbox_heal.remove(journal, mbox_fd, start, end, size)
    return [f"took out an interrupted delivery ({end - start} bytes at offset "
            f"{start}) after the mbox was {how} by another program"]


def _find_boundary(fd, start, end):
    """Offset of the first line after start beginning with "From ", or None."""
    pos = start
    tail = b""
    while pos < end:
        chunk = os.pread(fd, min(SCAN_CHUNK, end - pos), pos)
        if not chunk:
            break
        data = tail + chunk
        i = data.find(_BOUNDARY)
        if i >= 0:
            return pos - len(tail) + i + 1
        tail = data[-(len(_BOUNDARY) - 1):]
        pos += len(chunk)
    return None
