"""The message being delivered: a bounded header reader and a streaming body copy.

read_message(fd) reads only the header block into memory, and no more than
HEADER_PARSE_LIMIT bytes of it; the body is copied straight from the input to the
first mailbox file, in COPY_CHUNK pieces, so memory stays flat whatever the size.
After that first save the delivery records the saved file in stored_path, and later
copies (another folder, a fallback to INBOX) are read from it.

What is stored is the input byte for byte, except: a leading mbox "From " line is
removed (its address becomes the envelope sender unless -f was given), CRLF line
endings become LF (Dovecot stores LF: mail_save_crlf=no), and headers the delivery
adds (lda_original_recipient_header) are prepended.

Malformed input never loses the message: NUL bytes, bare CRs, a missing blank line
after the headers, over-long lines and a header block beyond the parse limits are
all stored as they came; only the parsed view (header_fields) stops early.

iter_fields/header_end are the one header parser, for this view and for Sieve's
(sieve/mail.py): names, unfolding and the end of the header are decided once.

Errors: a read error on the input is a MessageError (temporary). Writing errors are
OSError and belong to the storage that called write_to.

Security: header values are untrusted text. They are decoded with replacement of
invalid UTF-8, and whoever logs them must strip control characters (log.py does).
"""

import os

# Postfix's header_size_limit default (102400 bytes): read_message reads no further
# before it starts storing; the bytes beyond are still stored.
HEADER_PARSE_LIMIT = 102400
# The delivery's own parsed view (header_fields: the log's Message-ID, Subject and
# From, and Return-Path) keeps at most this many fields and cuts values at this
# length. These bound only that view: Sieve parses the whole header with the same
# parser (iter_fields), bounded by sieve_max_memory instead.
HEADER_VALUE_LIMIT = 65536
HEADER_FIELD_LIMIT = 1000
# One read or write: large enough for few syscalls, small enough for flat memory.
COPY_CHUNK = 256 * 1024


class Message:
    """A message read from an input fd: parsed header view plus a body stream."""

    def __init__(self, fd, head, rest_pending, from_line_sender, eof=False):
        self._fd = fd                  # input still to read after head (None at EOF)
        self._head = head              # bytes read so far, LF line endings
        self._pending_cr = rest_pending
        self._eof = eof
        self.from_line_sender = from_line_sender
        self.prepend = []              # header lines (bytes, ending in b"\n") to add
        self.stored_path = None        # a saved copy, once the first save succeeded
        self.sizes = None              # (size, vsize) of what write_to writes
        self.consumed = False          # the input stream has been read to its end
        self._fields = None
        self.link_source = None        # for -p: a file whose bytes are exactly the message

    # -- the parsed view -------------------------------------------------------------

    def header_fields(self):
        """Return [(name, value)] for the header block, unfolded, as str."""
        if self._fields is None:
            self._fields = _parse_fields(self._head)
        return self._fields

    def get(self, name, default=None):
        """Return the first value of header field name (case-insensitive)."""
        lname = name.lower()
        for key, value in self.header_fields():
            if key.lower() == lname:
                return value
        return default

    # -- copying ----------------------------------------------------------------------

    def write_to(self, out_fd):
        """Write the whole message to out_fd; return (size, vsize).

        vsize counts every LF as CRLF (Dovecot's W=). The first call streams the
        input; later calls copy from stored_path, or from the input file for -p.
        """
        if self.consumed:
            return self._copy_stored(out_fd)
        size = lines = 0
        for piece in self.prepend:
            _write_all(out_fd, piece)
            size += len(piece)
            lines += piece.count(b"\n")
        _write_all(out_fd, self._head)
        size += len(self._head)
        lines += self._head.count(b"\n")
        self._head_len = len(self._head)
        if not self._eof:
            size, lines = self._stream_rest(out_fd, size, lines)
        self.consumed = True
        self.sizes = (size, size + lines)
        return self.sizes

    def _stream_rest(self, out_fd, size, lines):
        carry = self._pending_cr
        while True:
            chunk = _read_chunk(self._fd)
            if not chunk:
                break
            data, carry = _to_lf(carry + chunk)
            if data:
                _write_all(out_fd, data)
                size += len(data)
                lines += data.count(b"\n")
        if carry:
            _write_all(out_fd, carry)
            size += len(carry)
        return size, lines

    def _copy_stored(self, out_fd):
        src = self.stored_path or self.link_source
        if src is None:
            from .errors import MessageError
            raise MessageError("message input was consumed and no saved copy exists")
        in_fd = os.open(src, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            _copy_fd(in_fd, out_fd)
        finally:
            os.close(in_fd)
        return self.sizes

    def read_bytes(self):
        """Return the whole message (without the prepended lines) as one buffer.

        For Sieve tests that need the body. Memory: one copy of the message, grown
        in place (a bytearray; no second copy while reading); the buffer then also
        serves write_to, so it must be treated as read-only. The plain delivery path
        never calls this.
        """
        if self.consumed:
            src = self.stored_path or self.link_source
            with open(src, "rb") as f:
                return f.read()
        if self._eof and isinstance(self._head, bytearray):
            return self._head
        buf = bytearray(self._head)
        if not self._eof:
            carry = self._pending_cr
            while True:
                chunk = _read_chunk(self._fd)
                if not chunk:
                    break
                data, carry = _to_lf(carry + chunk)
                buf += data
            buf += carry
        # The whole message is now the head: write_to still works afterwards.
        self._head = buf
        self._eof = True
        self._pending_cr = b""
        return buf

    def header_buffer(self):
        """Return (buffer, end): the header block is buffer[:end] (blank line included).

        Reads on from the input only when the first read did not reach the end of
        the header (a header larger than HEADER_PARSE_LIMIT): the whole header is
        then in memory, as one copy of the message.
        """
        end = header_end(self._head)
        if end == len(self._head) and not self._eof:
            self.read_bytes()
            end = header_end(self._head)
        return self._head, end


class EditedMessage:
    """A copy of a message with its header edited (Sieve editheader).

    pieces are (buffer, start, end) ranges and bytes objects, written in order
    (the edited header, then the original body); the message's prepended lines
    (lda_original_recipient_header) come first and its envelope sender stays, so
    an edited copy differs from the original only where it was edited. Nothing is
    copied: the ranges point into the original message's buffer.
    """

    def __init__(self, message, pieces):
        self._prepend = list(getattr(message, "prepend", ()))
        self._pieces = pieces
        self.envelope_sender = getattr(message, "envelope_sender", None)
        self.from_line_sender = getattr(message, "from_line_sender", None)
        self.stored_path = None
        self.sizes = None

    def write_to(self, out_fd):
        size = lines = 0
        for piece in self._prepend:
            _write_all(out_fd, piece)
            size += len(piece)
            lines += piece.count(b"\n")
        for piece in self._pieces:
            if isinstance(piece, tuple):
                # In COPY_CHUNK slices: buf may be any buffer (bytes, an mmap).
                buf, start, end = piece
                for pos in range(start, end, COPY_CHUNK):
                    data = buf[pos:min(pos + COPY_CHUNK, end)]
                    _write_all(out_fd, data)
                    lines += data.count(b"\n")
                size += end - start
            else:
                _write_all(out_fd, piece)
                size += len(piece)
                lines += piece.count(b"\n")
        self.sizes = (size, size + lines)
        return self.sizes


def with_edited_header(message, pieces):
    """Return an EditedMessage: pieces (see EditedMessage) in place of message."""
    return EditedMessage(message, pieces)


def read_message(fd):
    """Read the header block of the message on fd; return a Message.

    A leading "From " line is removed and its address kept in from_line_sender.
    """
    buf = bytearray()
    eof = False
    # Read until the header block ends, the parse limit is reached, or EOF. Usually
    # one read for the whole message.
    while True:
        chunk = _read_chunk(fd)
        if not chunk:
            eof = True
            break
        buf += chunk
        if b"\n\n" in buf or b"\n\r\n" in buf or len(buf) > HEADER_PARSE_LIMIT:
            break
    head, carry = _to_lf(bytes(buf))
    if eof:
        head, carry = head + carry, b""
    sender = None
    if head.startswith(b"From "):
        end = head.find(b"\n")
        line = head[5:end if end >= 0 else len(head)]
        head = head[end + 1:] if end >= 0 else b""
        sender = _from_line_address(line)
    return Message(fd, head, carry, sender, eof=eof)


def scan_link_source(path, message):
    """For -p: mark path as a hard-link source when its bytes are exactly the message.

    True when nothing would be changed while storing (no From_ line, no CRLF, no
    prepended header); the sizes are computed on the way.
    """
    if message.from_line_sender is not None or message.prepend:
        return False
    size = lines = 0
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        prev = b""
        while True:
            chunk = os.read(fd, COPY_CHUNK)
            if not chunk:
                break
            if b"\r\n" in prev[-1:] + chunk[:1] or b"\r\n" in chunk:
                return False
            size += len(chunk)
            lines += chunk.count(b"\n")
            prev = chunk
    finally:
        os.close(fd)
    message.link_source = path
    message.stored_path = path
    message.sizes = (size, size + lines)
    message.consumed = True
    return True


# -- helpers ---------------------------------------------------------------------------

def _read_chunk(fd):
    try:
        return os.read(fd, COPY_CHUNK)
    except InterruptedError:  # pragma: no cover - PEP 475 retries already
        return os.read(fd, COPY_CHUNK)
    except OSError as exc:
        from .errors import MessageError
        raise MessageError(f"reading the message failed: {exc.strerror}") from None


def _write_all(fd, data):
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _copy_fd(in_fd, out_fd):
    while True:
        chunk = os.read(in_fd, COPY_CHUNK)
        if not chunk:
            return
        _write_all(out_fd, chunk)


def _to_lf(data):
    """Turn CRLF into LF; return (converted, carry) where carry is a trailing CR."""
    carry = b""
    if data.endswith(b"\r"):
        data, carry = data[:-1], b"\r"
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    return data, carry


def _from_line_address(line):
    """Return the address of an mbox From_ line's first word ("" for MAILER-DAEMON)."""
    word = line.split(None, 1)[0] if line.strip() else b""
    addr = word.decode("utf-8", "replace")
    if addr.startswith("<") and addr.endswith(">"):
        addr = addr[1:-1]
    if addr.upper() == "MAILER-DAEMON":
        return ""
    return addr


def _parse_fields(head):
    """Parse the header block of head into [(name, value)], bounded (the delivery's
    own view: the log's fields and Return-Path; Sieve parses the whole header)."""
    fields = []
    end = min(header_end(head), HEADER_PARSE_LIMIT)
    for _, _, name, value in iter_fields(head, 0, end):
        if len(fields) >= HEADER_FIELD_LIMIT:
            break
        fields.append(field_text(name, value[:HEADER_VALUE_LIMIT]))
    return fields


# -- the header parser (one for the delivery and Sieve) --------------------------------

def header_end(data, start=0, end=None):
    """Offset just past the header block of data[start:end] (its blank line
    included), or end when there is no blank line (all of it is header)."""
    if end is None:
        end = len(data)
    # Slices, not startswith: data may be any buffer with find (bytes, an mmap).
    if data[start:min(start + 1, end)] == b"\n":
        return start + 1
    if data[start:min(start + 2, end)] == b"\r\n":
        return start + 2
    lf = data.find(b"\n\n", start, end)
    crlf = data.find(b"\n\r\n", start, end if lf < 0 else lf + 2)
    if crlf >= 0:
        return crlf + 3
    return end if lf < 0 else lf + 2


def iter_fields(data, start=0, end=None):
    """Yield (first, stop, name, value) for each field of the header data[start:end].

    first..stop is the field's raw bytes (its lines with their line ends, so an
    edited copy can keep them byte for byte); name is the bytes before the colon
    without trailing white space; value is the unfolded value as Dovecot makes it:
    line ends removed, a folding TAB becomes a space, NULs removed, leading and
    trailing white space trimmed. A line without a colon (or with nothing before
    it) is no field and is skipped; the header ends at the first empty line.
    """
    if end is None:
        end = len(data)
    pos = start
    name = None
    while pos < end:
        nl = data.find(b"\n", pos, end)
        stop = end if nl < 0 else nl + 1
        line = data[pos:stop].rstrip(b"\n")
        if line.endswith(b"\r"):
            line = line[:-1]
        if name is not None and line[:1] in (b" ", b"\t"):
            # A folded TAB becomes a space (Dovecot's unfolding).
            parts.append(b" " + line[1:] if line[:1] == b"\t" else line)
            last = stop
            pos = stop
            continue
        if name is not None:
            yield first, last, name, _unfold(parts)
            name = None
        if line == b"":
            return
        colon = line.find(b":")
        if colon > 0:
            name = line[:colon].rstrip(b" \t")
            parts = [line[colon + 1:]]
            first, last = pos, stop
        pos = stop
    if name is not None:
        yield first, last, name, _unfold(parts)


def _unfold(parts):
    value = b"".join(parts).strip(b" \t")
    return value.replace(b"\0", b"") if b"\0" in value else value


def field_text(name, value):
    """(name, value) bytes of a parsed field -> str, invalid UTF-8 replaced."""
    return name.decode("utf-8", "replace"), value.decode("utf-8", "replace")
