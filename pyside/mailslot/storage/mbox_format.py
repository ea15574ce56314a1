"""The bytes of one mbox message: From_ line, filtered headers, quoted lines.

    encoder = MboxEncoder(variant="mboxrd", extra_headers=flag_headers(flags))
    out = from_line(sender, time.time())
    for chunk in message_chunks:
        out += encoder.feed(chunk)
    out += encoder.finish()         # the message's last line ends with "\\n"
    out += b"\\n"                    # the blank line that ends every message

What is written (RFC 4155, Dovecot's mbox-save.c and mbox-from.c):
  - "From <sender>  <Www Mmm dd hh:mm:ss yyyy>" in local time, as Dovecot's
    mbox_from_create() writes it; "MAILER-DAEMON" for the null sender;
  - the message's header fields, except those an mbox reader takes as its own
    metadata (Dovecot's mbox_save_drop_headers: Content-Length, Status, X-Delivery-ID,
    X-IMAP, X-IMAPbase, X-Keywords, X-Status, X-UID) -- a sender must not be able to
    set a message's flags, its IMAP UID or its length. A field's name is read as
    Dovecot's reader reads it (any white space before the colon stripped, a NUL
    ending it; header_dropped()), so padding cannot hide one; Status/X-Status with the
    flags this save asks for, and X-Keywords with its keywords (space-separated,
    as Dovecot's mbox-save.c writes them; which keywords: see mbox.py and
    declared_keywords()), are added at the end of the header block;
  - every line that could be taken for a message boundary quoted with ">":
    mboxrd (default) quotes /^>*From / so that readers can undo it exactly;
    mboxo quotes /^From / only (a ">From " line then reads back as "From ");
  - a missing final newline is added (Dovecot does the same).
So no line inside a message can start with "From ": the only boundaries in the
file are the ones the writer made. Memory stays bounded by the chunk size plus
HEADER_NAME_HOLD.

Errors: none; the encoder works on any bytes (NUL, bare CR, 8-bit, endless lines).

Security: header fields and the sender come from the sender of the mail. The From_
line's sender has control characters and white space replaced, and is bounded, so
that it can neither end the line nor shift the date readers parse after it.
"""

import time

VARIANTS = ("mboxrd", "mboxo")
# Dovecot's mbox_save_drop_headers (src/lib-storage/index/mbox/mbox-storage.c),
# lower-cased: fields a sender could use to forge mbox metadata.
DROPPED_HEADERS = frozenset((b"content-length", b"status", b"x-delivery-id", b"x-imap",
                             b"x-imapbase", b"x-keywords", b"x-status", b"x-uid"))
# How much of a header line's start is held to decide whether it is one of
# DROPPED_HEADERS. Dovecot's reader strips any white space before the colon and ends
# a name at a NUL ("Status" + 5000 blanks + ": RO" sets \\Seen when read back), so a
# line that starts with a dropped name followed only by blanks (or by a NUL and
# anything) is still undecided until its colon. One still undecided after this many
# bytes is dropped: it is a forgery or junk, never a field a reader needs. Dovecot's
# own reader gives up on names well before this (between 5 and 8 KiB here).
HEADER_NAME_HOLD = 64 * 1024
_LWSP = b" \t"
# RFC 5321 4.5.3.1.3: a reverse-path is at most 256 octets; leave room for UTF-8.
SENDER_MAX = 512
NULL_SENDER = "MAILER-DAEMON"
# IMAP system flags -> Dovecot's Status: and X-Status: letters (mbox-sync-parse.c).
STATUS_LETTERS = (("\\seen", "R"),)
XSTATUS_LETTERS = (("\\answered", "A"), ("\\flagged", "F"), ("\\draft", "T"),
                   ("\\deleted", "D"))
_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")   # tm_wday 0 = Monday
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
           "Nov", "Dec")
_FROM = b"From "
# How much of an mbox's start is read to find its first message's X-IMAPbase
# (Dovecot adds the field to the first header block; a header block is rarely
# longer than this).
IMAPBASE_READ_MAX = 128 * 1024
_NL = 10
_GT = 62


def clean_sender(sender):
    """The envelope sender as the From_ line carries it (one safe word)."""
    if not sender:
        return NULL_SENDER
    if sender.startswith("<") and sender.endswith(">"):
        sender = sender[1:-1] or NULL_SENDER
    text = "".join("_" if (ord(c) <= 0x20 or ord(c) == 0x7F or 0xD800 <= ord(c) <= 0xDFFF)
                   else c for c in sender)
    raw = text.encode("utf-8")
    if len(raw) > SENDER_MAX:
        raw = raw[:SENDER_MAX].decode("utf-8", "ignore").encode("utf-8")
    return raw.decode("utf-8")


def from_line(sender, when=None):
    """The From_ line (with its newline) for sender at time when (default now)."""
    tm = time.localtime(when)
    stamp = (f"{_WEEKDAYS[tm.tm_wday]} {_MONTHS[tm.tm_mon - 1]} {tm.tm_mday:02d} "
             f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d} {tm.tm_year:04d}")
    return f"From {clean_sender(sender)}  {stamp}\n".encode("utf-8")


def flag_headers(flags, keywords=()):
    """Status:/X-Status: lines for IMAP system flags, X-Keywords: for keywords
    (b"" when there are none). keywords must be validated names (keywords.py):
    flags that are not system flags are ignored here."""
    lowered = {f.lower() for f in flags}
    status = "".join(letter for flag, letter in STATUS_LETTERS if flag in lowered)
    xstatus = "".join(letter for flag, letter in XSTATUS_LETTERS if flag in lowered)
    out = ""
    if status:
        out += f"Status: {status}\n"
    if xstatus:
        out += f"X-Status: {xstatus}\n"
    if keywords:
        out += f"X-Keywords: {' '.join(keywords)}\n"
    return out.encode("ascii")


def declared_keywords(data):
    """The keywords the X-IMAPbase (or X-IMAP) field of an mbox's first message
    declares, as a set of lower-cased names; None if data (the file's first
    IMAPBASE_READ_MAX bytes) has no such field in its first header block.

    Dovecot lists there every keyword the mailbox uses ("X-IMAPbase: <uidvalidity>
    <last uid> kw1 kw2 ...", mbox-sync-parse.c), and takes an X-Keywords field of a
    later message only if it knows every name in it."""
    if not data.startswith(_FROM):
        return None
    end = data.find(b"\n\n")
    head = data[data.find(b"\n") + 1:end if end >= 0 else len(data)]
    fields = []
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += b" " + line.strip()
        else:
            fields.append(line)
    for field in fields:
        name, colon, value = field.partition(b":")
        if colon and name.rstrip(b" \t").lower() in (b"x-imapbase", b"x-imap"):
            words = value.split()
            return {w.decode("ascii", "replace").lower() for w in words[2:]}
    return None


def is_from_candidate(data, rd):
    """True if data, at a line start, could still grow into a line to quote."""
    if rd:
        data = data.lstrip(b">")
    return len(data) < len(_FROM) and _FROM.startswith(data)


def quote_lines(block, rd):
    """Quote the lines of block (which starts at a line start) that need it."""
    out = []
    _quote_into(out, block, 0, len(block), rd)
    return out[0] if len(out) == 1 else b"".join(out)


def _quote_into(out, buf, first, end, rd):
    """Append buf[first:end] (which starts at a line start) to out, quoted, as
    pieces that share buf's memory: a large body is not copied once more here."""
    i = buf.find(_FROM, first, end)
    start = first
    while i >= 0:
        j = i
        if rd:
            while j > first and buf[j - 1] == _GT:
                j -= 1
        if j == first or buf[j - 1] == _NL:
            if j > start:
                out.append(_piece(buf, start, j))
            out.append(b">")
            start = j
        i = buf.find(_FROM, i + len(_FROM), end)
    if end > start:
        out.append(_piece(buf, start, end))


def _piece(buf, start, end):
    """buf[start:end] without a copy (buf itself when it is all of it)."""
    if start == 0 and end == len(buf):
        return buf
    return memoryview(buf)[start:end]


def _name_state(head):
    """Whether the header line starting with head (no newline) is dropped: True or
    False, or None while no colon has been seen and the name so far could still be
    one of DROPPED_HEADERS.

    The name is what comes before the first colon, cut at a NUL (Dovecot compares
    names as C strings), with white space at its end stripped -- as Dovecot's
    header parser reads it, or stricter, never looser."""
    colon = head.find(b":")
    name = head if colon < 0 else head[:colon]
    nul = name.find(b"\0")
    core = name if nul < 0 else name[:nul]
    stripped = core.rstrip(_LWSP).lower()
    if colon >= 0:
        return stripped in DROPPED_HEADERS
    if nul >= 0 or len(stripped) < len(core):
        # The name's significant part is complete: only a colon can still come.
        return None if stripped in DROPPED_HEADERS else False
    if any(d.startswith(stripped) for d in DROPPED_HEADERS):
        return None
    return False


def header_dropped(line):
    """True if the header line (its start, or all of it with its newline) is one
    of DROPPED_HEADERS, decided on its first HEADER_NAME_HOLD bytes: a line still
    undecided there is dropped, one that ended without a colon is kept."""
    head = line[:HEADER_NAME_HOLD + 1]
    nl = head.find(b"\n")
    complete = nl >= 0
    head = head[:nl] if complete else head[:HEADER_NAME_HOLD]
    state = _name_state(head)
    if state is None:
        return not complete
    return state


class MboxEncoder:
    """Turns a message (LF line ends) into its mbox form, chunk by chunk."""

    def __init__(self, variant="mboxrd", extra_headers=b""):
        if variant not in VARIANTS:
            raise ValueError(f"unknown mbox variant {variant!r}")
        self.rd = variant == "mboxrd"
        self.extra = extra_headers
        self.in_headers = True
        self.dropping = False       # the current header field is being left out
        self.carry = b""            # undecided bytes at a line start
        self.mid_line = False       # inside a line whose start is already written
        self.last = b""             # the last byte written, for the final newline

    def feed(self, data):
        """Encode the next piece of the message; return the bytes to write."""
        return b"".join(self.feed_pieces(data))

    def feed_pieces(self, data):
        """feed(), as a list of buffers to write in order (bytes, or memoryviews
        into data: valid as long as data is; nothing is copied that need not be)."""
        buf = self.carry + data if self.carry else data
        self.carry = b""
        out = []
        if self.in_headers:
            buf = self._headers(buf, out)
        if buf and not self.in_headers:
            self._body(buf, out)
        for piece in reversed(out):
            if len(piece):
                self.last = bytes(piece[-1:])
                break
        return out

    def finish(self):
        """Flush what is left; the result ends the message with a newline."""
        out = []
        if self.carry:
            # At the end of the message an undecided "Fro" is just text.
            if self.in_headers:
                # The message ends here, so does this line: judged as complete
                # ("Cont" is no Content-Length field). Judged unfinished it was
                # dropped, and a last header line without a colon was lost.
                self._header_line(self.carry, out, complete=True)
            else:
                out.append(self.carry)
            self.carry = b""
        data = self._joined(out)
        if self.last not in (b"", b"\n"):
            data += b"\n"
            self.last = b"\n"
        if self.in_headers and self.extra:
            # A message without a body: the flag fields still end its header.
            data += self.extra
            self.last = b"\n"
        return data

    def _joined(self, out):
        data = b"".join(out)
        if data:
            self.last = data[-1:]
        return data

    def _headers(self, buf, out):
        """Filter complete header lines; return what follows the header block."""
        pos = 0
        n = len(buf)
        while pos < n:
            nl = buf.find(b"\n", pos)
            if self.mid_line:
                # The rest of a long header line whose start was already judged.
                end = n if nl < 0 else nl + 1
                if not self.dropping:
                    out.append(buf[pos:end])
                pos = end
                if nl >= 0:
                    self.mid_line = False
                continue
            if nl < 0:
                rest = buf[pos:]
                undecided = len(rest) <= HEADER_NAME_HOLD and _name_state(rest) is None
                if undecided or is_from_candidate(rest, False):
                    self.carry = rest       # not yet known what this line is
                    return b""
                if self.rd and rest[:1] == b">" and not header_dropped(rest):
                    # As in _body: the '>' run may carry the quoting '>', so it is
                    # written now and only an undecided "From" prefix is kept.
                    run = len(rest) - len(rest.lstrip(b">"))
                    if is_from_candidate(rest[run:], False):
                        out.append(rest[:run])
                        self.carry = rest[run:]
                        return b""
                self._header_line(rest, out)
                self.mid_line = True
                return b""
            line = buf[pos:nl + 1]
            pos = nl + 1
            if line == b"\n":
                # The end of the header block: our flag fields go just before it.
                out.append(self.extra)
                out.append(line)
                self.in_headers = False
                return buf[pos:]
            self._header_line(line, out)
        return b""

    def _header_line(self, line, out, complete=False):
        if line[0] in (0x20, 0x09):         # a continuation of the field above
            if not self.dropping:
                out.append(line)
            return
        self.dropping = header_dropped(line + b"\n" if complete else line)
        if not self.dropping:
            out.append(quote_lines(line, self.rd))

    def _body(self, buf, out):
        pos = 0
        if self.mid_line:
            nl = buf.find(b"\n")
            if nl < 0:
                out.append(buf)
                return
            out.append(buf[:nl + 1])
            pos = nl + 1
            self.mid_line = False
        last_nl = buf.rfind(b"\n", pos)
        if last_nl >= 0:
            _quote_into(out, buf, pos, last_nl + 1, self.rd)
            pos = last_nl + 1
        if pos == len(buf):
            return
        rest = buf[pos:]                    # an unfinished line, from its start
        if self.rd:
            # Any '>' of a run at the line start may carry the quoting '>', so the
            # run is written now and only the undecided "From" prefix is kept.
            run = len(rest) - len(rest.lstrip(b">"))
            if is_from_candidate(rest[run:], False):
                out.append(rest[:run])
                self.carry = rest[run:]
                return
        elif is_from_candidate(rest, False):
            self.carry = rest
            return
        out.append(quote_lines(rest, self.rd))
        self.mid_line = True
