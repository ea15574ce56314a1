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

Errors: a read error on the input is a MessageError (temporary). Writing errors are
OSError and belong to the storage that called write_to.

Security: header values are untrusted text. They are decoded with replacement of
invalid UTF-8, and whoever logs them must strip control characters (log.py does).
"""

import os

# Postfix's header_size_limit default (102400 bytes): beyond it no MTA treats lines
# as headers. We parse no further; the bytes are still stored.
HEADER_PARSE_LIMIT = 102400
# RFC 5322 2.1.1 allows 998 characters a line; a field longer than this is stored
# but cut in the parsed view.
HEADER_VALUE_LIMIT = 65536
# Postfix's header_count limit is 1000 in practice for hop counting; parse no more.
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
        """Return the whole message as stored, reading the input to its end.

        For Sieve tests that need the body. Memory grows with the message: the
        plain delivery path never calls this.
        """
        if self.consumed:
            src = self.stored_path or self.link_source
            with open(src, "rb") as f:
                return f.read()
        pieces = [b"".join(self.prepend), self._head]
        if not self._eof:
            carry = self._pending_cr
            while True:
                chunk = _read_chunk(self._fd)
                if not chunk:
                    break
                data, carry = _to_lf(carry + chunk)
                pieces.append(data)
            pieces.append(carry)
        whole = b"".join(pieces)
        # Keep the rest as the new head: write_to still works afterwards.
        self._head = whole[len(pieces[0]):]
        self._eof = True
        self._pending_cr = b""
        return whole


class EditedMessage:
    """A copy of a message with its header replaced (Sieve editheader).

    Built from Message.with_header_fields(); it writes the new header, then the
    original body, and has no saved copy to hard-link.
    """

    def __init__(self, header, body):
        self._header, self._body = header, body
        self.stored_path = None
        self.sizes = None

    def write_to(self, out_fd):
        _write_all(out_fd, self._header)
        _write_all(out_fd, self._body)
        size = len(self._header) + len(self._body)
        self.sizes = (size, size + self._header.count(b"\n") + self._body.count(b"\n"))
        return self.sizes


def with_header_fields(message, fields):
    """Return an EditedMessage: message's body under the header fields given.

    fields are (name, value) pairs as Sieve's editheader left them; values are
    unfolded text and are written one line each.
    """
    whole = message.read_bytes()
    end = whole.find(b"\n\n")
    body = whole[end + 1:] if end >= 0 else b"\n"
    lines = []
    for name, value in fields:
        clean = value.replace("\r", " ").replace("\n", " ")
        lines.append(f"{name}: {clean}\n".encode("utf-8", "surrogateescape"))
    return EditedMessage(b"".join(lines), body)


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
    """Parse the header block of head into [(name, value)], bounded."""
    fields = []
    end = head.find(b"\n\n")
    block = head[:end + 1] if end >= 0 else head
    if len(block) > HEADER_PARSE_LIMIT:
        block = block[:HEADER_PARSE_LIMIT]
    name = None
    value = []
    for raw in block.split(b"\n"):
        if raw[:1] in (b" ", b"\t") and name is not None:
            value.append(raw)
            continue
        if name is not None:
            fields.append(_field(name, value))
            name = None
            if len(fields) >= HEADER_FIELD_LIMIT:
                break
        colon = raw.find(b":")
        if colon <= 0 or not _is_field_name(raw[:colon]):
            if raw:
                break      # not a header line: the header block ends here (malformed)
            continue
        name = raw[:colon]
        value = [raw[colon + 1:]]
    if name is not None and len(fields) < HEADER_FIELD_LIMIT:
        fields.append(_field(name, value))
    return fields


def _is_field_name(name):
    # RFC 5322 3.6.8: printable US-ASCII except ":" (and so no space).
    return all(33 <= c <= 126 for c in name)


def _field(name, parts):
    # RFC 5322 2.2.3: unfolding removes the line breaks and keeps the white space.
    value = b"".join(p.rstrip(b"\r") for p in parts).strip(b" \t")
    if len(value) > HEADER_VALUE_LIMIT:
        value = value[:HEADER_VALUE_LIMIT]
    return name.decode("ascii"), value.replace(b"\0", b"").decode("utf-8", "replace")
