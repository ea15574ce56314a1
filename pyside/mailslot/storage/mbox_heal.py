"""Healing a cut mbox append that another program touched before mailslot came back.

A delivery killed mid-append (SIGKILL, a crash, a power loss) leaves the start of a
message at the end of the mbox and a record in the append journal (mbox_journal.py).
When mailslot is the next to take the mbox's locks, the record still fits the file
and the cut bytes are simply truncated away. But Dovecot may come first: an IMAP
login syncs the mbox and writes its metadata fields (X-IMAPbase, X-UID, Status,
Content-Length, ...) into every message, shifting all offsets; an expunge moves
messages; dovecot-lda appends after the cut message. The record's offsets then
mean nothing, and before this module the cut message stayed for good.

find_cut() looks for the cut message wherever it went: a message whose From_ line
is exactly the recorded one and whose header lines, once the mbox metadata fields
(mbox_format.DROPPED_HEADERS -- the ones Dovecot adds and mailslot's encoder never
passes through from a sender) are left out on both sides, are the recorded ones.
It counts as cut only when its length without those fields is shorter than the
whole append was (the record's total, less the separator fix and the flag fields
mailslot wrote itself): a whole append is never taken back, it may have been
confirmed. A streamed append recorded no total: it was never confirmed (mbox_append
makes its clear durable first), so the one message that matches is taken back.
Two or more matching cut candidates are ambiguous: nothing is touched, it is noted.

remove() takes [start, end) out of the mbox: a truncate when it is the tail, else a
move of the tail down that survives a crash at any point: the tail is first copied
to a side file beside the journal (fsync()ed), then a move record replaces the
append record in the journal (fdatasync()ed), then the tail is written at start,
the mbox truncated and fsync()ed; a crash in between leaves the move record, and
the next delivery redoes the move from the side file (redo_move: it is idempotent).

Errors: OSError, for the caller (mbox_journal.recover) to report; nothing here
opens a path outside the journal's directory.

Security: the side file is opened with O_NOFOLLOW in the journal's directory (fd);
the mbox bytes are only removed when they match our own record, and the record
itself only ever names bytes of ours (see mbox_journal's security notes).
"""

import os

from .mbox_format import DROPPED_HEADERS

SCAN_CHUNK = 256 * 1024
# How much of a candidate's header is read to compare it with the record: the
# recorded prefix (512 bytes) plus the metadata fields Dovecot may have added.
HEAD_READ_MAX = 64 * 1024
# A cut append may have gained up to two newlines from the next writer's separator
# fix: that close to whole, its bytes are the whole message's (see find_cut).
SEPARATOR_SLACK = 2
MOVE_MAGIC = b"mailslot-mbox-journal move 1\n"
TAIL_NAME = "mailslot-journal.tail"
_FLAGS = os.O_NOFOLLOW | os.O_CLOEXEC


def header_lines(data):
    """(lines, meta, ended): data's From_ line and header lines without the mbox
    metadata fields (the last one possibly partial), the bytes those fields took,
    and whether the header's end (its blank line) lies within data."""
    parts = data.split(b"\n")
    lines, meta, dropping = [parts[0]], 0, False
    for i in range(1, len(parts)):
        line, last = parts[i], i == len(parts) - 1
        if line == b"" and not last:
            return lines, meta, True
        if line[:1] in (b" ", b"\t"):           # a continuation line
            if dropping:
                meta += len(line) + (not last)
            else:
                lines.append(line)
            continue
        name, colon, _ = line.partition(b":")
        dropping = bool(colon) and name.rstrip(b" \t").lower() in DROPPED_HEADERS
        if dropping:
            meta += len(line) + (not last)
        else:
            lines.append(line)
    return lines, meta, False


def _matches(cand, ended, pref):
    """True if the candidate's header lines are the recorded ones (or a cut of them)."""
    if len(pref) < 2 or cand[0] != pref[0]:
        return False
    for i in range(1, len(pref)):
        p = pref[i]
        if i >= len(cand):
            return True                         # the candidate's header was cut here
        c = cand[i]
        if i == len(pref) - 1:
            return c.startswith(p) or p.startswith(c)   # the prefix ends mid-line
        if c != p:
            return i == len(cand) - 1 and not ended and p.startswith(c)
    return True


def _boundaries(fd, size, needle, pos=0):
    """Offsets after pos of the lines starting as needle says (after its "\\n")."""
    tail = b""
    keep = len(needle) - 1
    while pos < size:
        chunk = os.pread(fd, min(SCAN_CHUNK, size - pos), pos)
        if not chunk:
            break
        data = tail + chunk
        base = pos - len(tail)
        i = data.find(needle)
        while i >= 0:
            yield base + i + 1
            i = data.find(needle, i + 1)
        tail = data[-keep:] if keep else b""
        pos += len(chunk)


def _message_end(fd, start, size):
    """Where the message starting at start ends: the next "From " line, or the end."""
    for offset in _boundaries(fd, size, b"\nFrom ", start):
        return offset
    return size


def find_cut(fd, size, record):
    """(start, end) of the cut append of record in the mbox, or (None, why)."""
    pref, _meta, _ended = header_lines(record.prefix)
    if len(pref) < 2:
        return None, "its From_ line was not recorded whole"
    first = pref[0]
    starts = [0] if size else []
    starts.extend(_boundaries(fd, size, b"\nFrom "))
    whole = None
    if record.total is not None:
        whole = (record.total - (record.from_offset - record.length)
                 - (record.meta or 0) - SEPARATOR_SLACK)
    cut = []
    for start in starts:
        line = os.pread(fd, len(first) + 1, start)
        nl = line.find(b"\n")
        line = line if nl < 0 else line[:nl]
        if line != first:
            # Cut inside the From_ line: to Dovecot it is a last body line of the
            # message before, followed at most by a writer's separator newlines.
            if len(line) >= len(b"From ") and first.startswith(line):
                end = _message_end(fd, start, size)
                if end - start <= len(line) + SEPARATOR_SLACK:
                    cut.append((start, end))
            continue
        end = _message_end(fd, start, size)
        head = os.pread(fd, min(HEAD_READ_MAX, end - start), start)
        lines, meta, ended = header_lines(head)
        if not _matches(lines, ended, pref):
            continue
        if whole is None or (end - start) - meta < whole:
            cut.append((start, end))
    if len(cut) == 1:
        return cut[0], None
    if not cut:
        return None, "no cut message of ours is left in it"
    return None, f"{len(cut)} messages look like it"


def remove(journal, mbox_fd, start, end, size):
    """Take [start, end) out of the mbox (see the module docstring); durable."""
    if end >= size:
        # Why truncate and fsync: the cut message must be gone for good before
        # this delivery appends after the last whole message.
        os.ftruncate(mbox_fd, start)
        if journal.fsync:
            os.fsync(mbox_fd)
        return
    ino = os.fstat(mbox_fd).st_ino
    tail_fd = os.open(TAIL_NAME, os.O_RDWR | os.O_CREAT | os.O_TRUNC | _FLAGS, 0o600,
                      dir_fd=journal.dir_fd)
    try:
        pos = end
        while pos < size:
            chunk = os.pread(mbox_fd, min(SCAN_CHUNK, size - pos), pos)
            if not chunk:
                raise OSError(5, "the mbox ended early while its tail was copied")
            _write_all(tail_fd, chunk, pos - end)
            pos += len(chunk)
        if journal.fsync:
            # Why: the copy must be on disk before the record that relies on it.
            os.fsync(tail_fd)
            os.fsync(journal.dir_fd)
        record = MOVE_MAGIC + f"{ino} {start} {size - end} {size}\n".encode("ascii")
        journal.write_raw(record)       # durable: the move may begin
        _move(journal, mbox_fd, tail_fd, start, size - end)
    finally:
        os.close(tail_fd)
    _forget(journal)


def _forget(journal):
    # Why durable: a move record that came back after a crash, once other mail
    # was appended, must not be redone over it (redo_move also checks the size).
    journal.end(durable=True)
    try:
        os.unlink(TAIL_NAME, dir_fd=journal.dir_fd)
    except OSError:
        pass


def redo_move(journal, data, mbox_fd):
    """Finish a move a crash interrupted (the journal holds a move record)."""
    line = data[len(MOVE_MAGIC):].partition(b"\n")[0].split(b" ")
    if len(line) != 4 or not all(f.isdigit() for f in line):
        return [f"{journal.path}: incomplete move record dropped"]
    ino, start, length, old_size = (int(f) for f in line)
    st = os.fstat(mbox_fd)
    if st.st_ino != ino or st.st_size not in (old_size, start + length):
        return [f"{journal.path}: move record for another mbox file dropped"]
    try:
        tail_fd = os.open(TAIL_NAME, os.O_RDONLY | _FLAGS, dir_fd=journal.dir_fd)
    except FileNotFoundError:
        return [f"{journal.path}: move record without its tail copy dropped"]
    try:
        if os.fstat(tail_fd).st_size != length:
            return [f"{journal.path}: move record with a short tail copy dropped"]
        _move(journal, mbox_fd, tail_fd, start, length)
    finally:
        os.close(tail_fd)
    _forget(journal)
    return [f"finished taking an interrupted delivery out of the mbox at offset {start}"]


def _move(journal, mbox_fd, tail_fd, start, length):
    import fcntl     # off the plain delivery path: only a heal moves bytes
    # Why: Linux's pwrite() on an O_APPEND fd appends whatever the offset says.
    flags = fcntl.fcntl(mbox_fd, fcntl.F_GETFL)
    fcntl.fcntl(mbox_fd, fcntl.F_SETFL, flags & ~os.O_APPEND)
    try:
        pos = 0
        while pos < length:
            chunk = os.pread(tail_fd, min(SCAN_CHUNK, length - pos), pos)
            if not chunk:
                raise OSError(5, "the tail copy ended early")
            _write_all(mbox_fd, chunk, start + pos)
            pos += len(chunk)
    finally:
        fcntl.fcntl(mbox_fd, fcntl.F_SETFL, flags)
    os.ftruncate(mbox_fd, start + length)
    if journal.fsync:
        # Why: the moved tail must be durable before the move record is wiped.
        os.fsync(mbox_fd)


def _write_all(fd, data, offset):
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n

