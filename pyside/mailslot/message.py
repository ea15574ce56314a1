"""The message being delivered: read once, shared by every recipient and copy.

read_message(fd) reads the header block (no more than HEADER_PARSE_LIMIT bytes of it
are parsed) and returns a Message; the rest of the input is read on first need, once,
into the message's Spool: in memory up to SPOOL_MEMORY_MAX, beyond that in an unnamed
file (O_TMPFILE in the temp directory, else a memfd), so memory stays flat whatever
the size; its vsize is counted only when asked for (Spool.vsize). The spool
belongs to the delivering process, not to any mailbox: every
copy, for every recipient, is written from it, and it is never changed.

What differs per recipient -- the header lines a delivery adds (none yet: room for
Delivered-To, Return-Path) and the envelope sender of an mbox From_
line -- is a MessageView (Message.view(...)): the shared message seen with those
lines in front. A view also remembers the file its first Maildir copy went to, so
that further copies for that recipient are hard links (stored_path).

What is stored is the input byte for byte, except: a leading mbox "From " line is
removed (its address becomes the envelope sender unless -f was given), CRLF line
endings become LF (Dovecot stores LF: mail_save_crlf=no), and a view's lines are
prepended.

Malformed input never loses the message: NUL bytes, bare CRs, a missing blank line
after the headers, over-long lines and a header block beyond the parse limits are
all stored as they came; only the parsed view (header_fields) stops early.

iter_fields/header_end are the one header parser, for this view and for Sieve's
(sieve/mail.py): names, unfolding and the end of the header are decided once.

parse_address() reads an envelope address (-f, -a, -r, LMTP's MAIL/RCPT) bounded by
RFC 5321's MAX_PATH_LENGTH.

Errors: a read error on the input is a MessageError (temporary); a spool that cannot
be written is a StorageError (temporary). Writing errors into a mailbox are OSError
and belong to the storage that called write_to.

Security: header values are untrusted text. They are decoded with replacement of
invalid UTF-8, and whoever logs them must strip control characters (log.py does).
header_line() makes one header line of a value, control characters removed, so a
recipient or sender address can never start a second line. The spool file has no
name: no other process can open it, and nothing is left behind whatever kills us.
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
# A spool stays in memory up to this size (the usual message, no file at all);
# beyond it the whole message moves to an unnamed file. mailslot-lmtpd holds one
# spool per connection at once: at 1 MiB, 16 connections starting large messages
# held 16 MiB of them (issue 17's budget is 64 MiB for the whole daemon); at
# 128 KiB a 2 KB or 100 KB message still never opens a file.
SPOOL_MEMORY_MAX = 128 * 1024
# Message.from_spool reads a spool file's start in reads of this size until the
# header's blank line: a message's header is usually a few KB.
HEAD_READ = 16 * 1024
# The spool file's mode: private to the delivering user.
SPOOL_MODE = 0o600
# Where the spool file goes when no mail_temp_dir is given.
DEFAULT_TEMP_DIR = "/tmp"
# RFC 5321 4.5.3.1.3: a reverse- or forward-path is at most 256 octets.
MAX_PATH_LENGTH = 256


class Spool:
    """A message's bytes, written once and then read any number of times.

    write() appends; up to SPOOL_MEMORY_MAX the pieces stay in memory, past it
    they move to an unnamed file in temp_dir. size, vsize (each LF counted as
    CRLF, Dovecot's W=) and chunks() describe the whole. Spool.of(source,
    temp_dir) fills one from any source with write_to(fd) -> (size, vsize).

    vsize is counted on first use, not while writing: counting the LFs is the
    costliest pass over a large message (about 1 ms a MB, more than copying it),
    and an mbox save needs no vsize unless the log line shows it.
    """

    def __init__(self, temp_dir=None):
        self.temp_dir = temp_dir or DEFAULT_TEMP_DIR
        self.fd = None
        self._pieces = []
        self.size = 0
        self._lines = None          # LFs in the whole, once counted (see vsize)

    @classmethod
    def of(cls, source, temp_dir=None):
        """A spool filled by source.write_to() (a source that only writes to an fd)."""
        spool = cls(temp_dir)
        spool.fd = _open_spool_file(spool.temp_dir)
        try:
            try:
                size, vsize = source.write_to(spool.fd)
                real = os.fstat(spool.fd).st_size
            except OSError as err:
                raise _spool_error(spool.temp_dir, err) from None
            if real != size:
                from .errors import StorageError
                raise StorageError(f"message source reported {size} bytes but the spool "
                                   f"file has {real}")
        except BaseException:
            spool.close()
            raise
        spool.size, spool._lines = size, vsize - size
        return spool

    @property
    def vsize(self):
        if self._lines is None:
            if self.size and self.fd is None and not self._pieces:
                raise ValueError("the spool was closed before its vsize was counted")
            self._lines = sum(chunk.count(b"\n") for chunk in self.chunks())
        return self.size + self._lines

    def write(self, data):
        if not data:
            return
        self.size += len(data)
        self._lines = None
        try:
            if self.fd is not None:
                _write_all(self.fd, data)
                return
            self._pieces.append(data)
            if self.size > SPOOL_MEMORY_MAX:
                # Why a file past the limit: memory stays flat for any size.
                self.fd = _open_spool_file(self.temp_dir)
                pieces, self._pieces = self._pieces, []
                for piece in pieces:
                    _write_all(self.fd, piece)
        except OSError as err:
            raise _spool_error(self.temp_dir, err) from None

    def chunks(self, size=COPY_CHUNK):
        """The bytes, in order, in pieces of at most about `size` (a spool in
        memory: its one piece)."""
        if self.fd is None:
            if len(self._pieces) > 1:
                # One piece (at most SPOOL_MEMORY_MAX): one write per copy.
                self._pieces = [b"".join(self._pieces)]
            yield from self._pieces
            return
        offset = 0
        while True:
            data = os.pread(self.fd, size, offset)
            if not data:
                return
            offset += len(data)
            yield data

    def copy_to(self, out_fd):
        """Write a spool file's bytes to out_fd through one buffer; return (size,
        vsize). Why one buffer and not chunks(): a large message's copy then
        allocates nothing per read, so concurrent copies do not leave the heap
        fragmented (docs/benchmarks.md, LMTP memory)."""
        buf = bytearray(COPY_CHUNK)
        view = memoryview(buf)
        count = self._lines is None
        offset = lines = 0
        while True:
            n = os.preadv(self.fd, [buf], offset)
            if not n:
                break
            offset += n
            _write_all(out_fd, view[:n])
            if count:
                lines += buf.count(b"\n", 0, n)     # vsize on the way, not a second pass
        if count:
            self._lines = lines
        return self.size, self.vsize

    def close(self):
        if self.fd is not None:
            fd, self.fd = self.fd, None
            os.close(fd)
        self._pieces = []

    def __del__(self):
        self.close()


def _open_spool_file(temp_dir):
    """An unnamed file for a spool: O_TMPFILE in temp_dir, else a memfd."""
    try:
        # Why unnamed: nothing is left behind, whatever kills us.
        return os.open(temp_dir, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, SPOOL_MODE)
    except (OSError, AttributeError):
        return os.memfd_create("mailslot-spool", os.MFD_CLOEXEC)


def _spool_error(temp_dir, err):
    from .storage.dirs import storage_error
    return storage_error("spooling the message in", temp_dir, err)


class Message:
    """A message read from an input fd: the parsed header view and, once needed,
    the whole message in its spool (read from the input exactly once)."""

    def __init__(self, fd, head, rest_pending, from_line_sender, eof=False, temp_dir=None):
        self._fd = fd                  # input still to read after head (None at EOF)
        self._head = head              # bytes read so far, LF line endings
        self._pending_cr = rest_pending
        self._eof = eof
        self.temp_dir = temp_dir
        self.from_line_sender = from_line_sender
        self.link_source = None        # for -p: a file whose bytes are exactly the message
        self.link_sizes = None         # (size, vsize) of link_source
        self.source_reads = 0          # reads of the input after the header block
        self._spool = None
        self._whole = None             # read_bytes()'s buffer, once asked for
        self._fields = None
        # None: not streamed; "cut": a copy straight from the input (_stream_to)
        # began and failed; else its (size, vsize).
        self._streamed = None
        self._input_started = False    # reading past the head began

    @classmethod
    def from_spool(cls, spool):
        """A Message whose bytes are already in spool (filled by its writer, e.g. the
        LMTP server while the content arrived): nothing is read or copied again."""
        head = bytearray()
        for chunk in spool.chunks(HEAD_READ):
            head += chunk
            if len(head) > HEADER_PARSE_LIMIT or b"\n\n" in head:
                break
        whole = len(head) >= spool.size
        end = header_end(head)
        if not whole and end < len(head):
            # Only the header is kept (the body is read from the spool when written),
            # and one byte past it: an end at the buffer's end would mean "no blank
            # line yet" to header_buffer().
            del head[end + 1:]
        message = cls(None, bytes(head), b"", None, eof=whole, temp_dir=spool.temp_dir)
        message._spool = spool
        return message

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

    # -- the spool --------------------------------------------------------------------

    @property
    def input_gone(self):
        """True when the message went straight into a copy and cannot be read again."""
        return self._spool is None and self._streamed is not None

    def spool(self):
        """The whole message, read from the input on the first call only."""
        if self._spool is None and self._streamed is not None:
            from .errors import MessageError
            raise MessageError("the message went straight from the input into its one "
                               "copy and cannot be read again")
        if self._spool is None:
            spool = Spool(self.temp_dir)
            for data in self._input_pieces():
                spool.write(data)
            self._spool = spool
        return self._spool

    @property
    def sizes(self):
        """(size, vsize) of the message as stored."""
        if self._spool is None and isinstance(self._streamed, tuple):
            return self._streamed
        spool = self.spool()
        return spool.size, spool.vsize

    @property
    def size(self):
        if self._spool is None and isinstance(self._streamed, tuple):
            return self._streamed[0]
        return self.spool().size

    @property
    def vsize(self):
        return self.spool().vsize

    def chunks(self):
        return self.spool().chunks()

    def write_to(self, out_fd, *, only_copy=False):
        """Write the whole message to out_fd; return (size, vsize).

        only_copy: the caller knows no other copy will be written from this
        message (the pipe's one recipient, no Sieve): a message still being read
        then goes straight from the input to out_fd (see _stream_to)."""
        if only_copy and self._spool is None and self._streamed is None \
                and not self._eof:
            return self._stream_to(out_fd)
        spool = self.spool()
        if spool.fd is not None:
            return spool.copy_to(out_fd)
        lines = 0 if spool._lines is None else None
        for chunk in spool.chunks():
            _write_all(out_fd, chunk)
            if lines is not None:
                lines += chunk.count(b"\n")     # vsize on the way, not a second pass
        if lines is not None:
            spool._lines = lines
        return spool.size, spool.vsize

    def _stream_to(self, out_fd):
        """The one copy of a single recipient, written as the input is read.

        Why: spooling a large message first would write it twice (spool, then
        mailbox) for a delivery that needs it once. Up to SPOOL_MEMORY_MAX the
        pieces are kept, and the spool is made of them (a later copy reads them);
        past it they are let go and the input is gone (input_gone): a later copy
        is a MessageError, and filing defers rather than falling back to INBOX
        (as before the spool existed). The Maildir's hard link of this copy still
        serves further copies of the same recipient.
        """
        self._streamed = "cut"
        kept, size, lines = [], 0, 0
        for data in self._input_pieces():
            _write_all(out_fd, data)
            size += len(data)
            lines += data.count(b"\n")
            if kept is not None:
                kept.append(data)
                if size > SPOOL_MEMORY_MAX:
                    kept = None
        if kept is not None:
            spool = Spool(self.temp_dir)
            spool._pieces, spool.size, spool._lines = kept, size, lines
            self._spool = spool
        self._streamed = (size, size + lines)
        return self._streamed

    def _input_pieces(self):
        """The message's bytes, LF line ends, read from the input (once)."""
        if self._input_started:
            # Why refuse: a read that failed part-way consumed input we no longer
            # have; a second pass would store a cut message as if it were whole.
            from .errors import MessageError
            raise MessageError("reading the message failed part-way; it cannot be "
                               "read again")
        yield self._head
        if not self._eof:
            self._input_started = True
            carry = self._pending_cr
            self._eof, self._pending_cr = True, b""
            while True:
                chunk = _read_chunk(self._fd)
                self.source_reads += 1
                if not chunk:
                    break
                data, carry = _to_lf(carry + chunk)
                if data:
                    yield data
            if carry:
                yield carry

    def read_bytes(self):
        """Return the whole message as one read-only buffer (for Sieve tests that
        need the body; the plain delivery path never calls this). Memory: one copy
        of the message, shared with an in-memory spool; a spool file is mapped
        (an mmap: find and slices, like bytes)."""
        if self._whole is None:
            spool = self.spool()
            if spool.fd is not None and spool.size:
                # A spool file is mapped, not read: no copy at all, and only the
                # pages Sieve looks at come into memory (joining its chunks held
                # two copies at once). The map keeps its own reference to the file.
                import mmap
                self._whole = mmap.mmap(spool.fd, 0, access=mmap.ACCESS_READ)
            else:
                self._whole = b"".join(spool.chunks())
                if spool.fd is None:
                    spool._pieces = [self._whole]     # one copy in memory, not two
        return self._whole

    def header_buffer(self):
        """Return (buffer, end): the header block is buffer[:end] (blank line included).

        Reads on from the input only when the first read did not reach the end of
        the header (a header larger than HEADER_PARSE_LIMIT): the whole message is
        then in memory, as one copy.
        """
        end = header_end(self._head)
        if end == len(self._head) and not self._eof:
            whole = self.read_bytes()
            return whole, header_end(whole)
        return self._head, end

    def view(self, lines=(), envelope_sender=None):
        """This message as one recipient gets it: lines (bytes, each ending in
        b"\n", from header_line()) in front, envelope_sender for an mbox From_ line."""
        return MessageView(self, lines, envelope_sender)

    def close(self):
        """Let the spool go (the input fd is the caller's)."""
        if self._spool is not None:
            self._spool.close()


class MessageView:
    """A Message with per-recipient header lines in front: a message source for the
    storages (write_to, chunks, size, vsize, stored_path, envelope_sender) and for
    Sieve (header_fields, get, read_bytes). The shared Message is never changed."""

    def __init__(self, message, lines, envelope_sender):
        self.message = message
        self.lines = b"".join(lines)
        self.envelope_sender = envelope_sender
        self.from_line_sender = message.from_line_sender
        # The -p file can be hard-linked only when nothing is put in front of it.
        if message.link_source is not None and not self.lines:
            self.stored_path, self._sizes = message.link_source, message.link_sizes
        else:
            self.stored_path, self._sizes = None, None
        # The core sets it when this view is the message's only use (see
        # Message.write_to's only_copy).
        self.only_copy = False

    @property
    def input_gone(self):
        return self.message.input_gone

    @property
    def prepend(self):
        """The lines in front, as EditedMessage takes them."""
        return [self.lines] if self.lines else []

    def header_fields(self):
        # The parsed view is the message's own header, as the sender wrote it.
        return self.message.header_fields()

    def header_buffer(self):
        return self.message.header_buffer()

    def get(self, name, default=None):
        return self.message.get(name, default)

    @property
    def sizes(self):
        """(size, vsize) of what write_to writes; once a copy is saved, of stored_path."""
        if self._sizes is None:
            size, vsize = self.message.sizes
            extra = len(self.lines)
            self._sizes = (size + extra, vsize + extra + self.lines.count(b"\n"))
        return self._sizes

    @sizes.setter
    def sizes(self, value):
        self._sizes = value

    @property
    def size(self):
        if self._sizes is None:
            # Without vsize: an mbox save needs the size only (see Spool.vsize).
            return self.message.size + len(self.lines)
        return self._sizes[0]

    @property
    def vsize(self):
        return self.sizes[1]

    def chunks(self):
        if self.lines:
            yield self.lines
        yield from self.message.chunks()

    def write_to(self, out_fd):
        if self.lines:
            _write_all(out_fd, self.lines)
        self.message.write_to(out_fd, only_copy=self.only_copy)
        return self.sizes

    def read_bytes(self):
        """The message's own buffer, without the lines in front (as Sieve sees it)."""
        return self.message.read_bytes()


class EditedMessage:
    """A copy of a message with its header edited (Sieve editheader).

    pieces are (buffer, start, end) ranges and bytes objects, written in order
    (the edited header, then the original body); the message's prepended lines
    (a view's) come first and its envelope sender stays, so
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


def header_line(name, value):
    """One header line "name: value\n" as bytes, control characters dropped."""
    # isprintable() is True only without any control character: most values
    # (addresses, dates) need no per-character pass.
    clean = value if value.isprintable() else \
        "".join(ch for ch in value if ch >= " " and ch != "\x7f")
    return f"{name}: {clean}\n".encode("utf-8", "surrogateescape")


def read_message(fd, temp_dir=None):
    """Read the header block of the message on fd; return a Message.

    A leading "From " line is removed and its address kept in from_line_sender.
    temp_dir is where a large message's spool file goes (mail_temp_dir).
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
    return Message(fd, head, carry, sender, eof=eof, temp_dir=temp_dir)


def scan_link_source(path, message):
    """For -p: mark path as a hard-link source when its bytes are exactly the message.

    True when nothing would be changed while storing (no From_ line, no CRLF); the
    sizes are computed on the way. A view with header lines in front does not link.
    """
    if message.from_line_sender is not None:
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
    message.link_sizes = (size, size + lines)
    return True


def parse_address(text):
    """Return the address in text ("" for <>), or None when it cannot be parsed.

    Accepts "addr", "<addr>" and "<>" (a source route "<@relay:addr>" is
    dropped: RFC 5321 3.3); an address is local@domain or a bare local
    part, with a quoted local part allowed; no control characters or unquoted
    spaces; at most MAX_PATH_LENGTH octets (RFC 5321).
    """
    text = text.strip()
    bracketed = text.startswith("<") and text.endswith(">")
    if bracketed:
        text = text[1:-1].strip()
    if bracketed and text.startswith("@") and ":" in text:
        # RFC 5321 4.1.2/3.3: a source route ("<@relay,@relay2:a@b>") is accepted
        # and ignored, as dovecot-lda does (only in <>, domain names only).
        route, _, text = text.partition(":")
        if any(not part.startswith("@") or len(part) < 2 or not all(
                c.isalnum() or c in "-." for c in part[1:])
                for part in route.split(",")):
            return None
    if text == "":
        return ""
    if len(text.encode("utf-8", "surrogateescape")) > MAX_PATH_LENGTH:
        return None
    in_quotes = False
    escaped = False
    for ch in text:
        if ord(ch) < 32 or ord(ch) == 127:
            return None
        if escaped:
            escaped = False
        elif in_quotes and ch == "\\":
            escaped = True
        elif ch == '"':
            in_quotes = not in_quotes
        elif not in_quotes and ch in " <>(),;\\[]":
            return None
    if in_quotes or text.startswith("@") or text.endswith("@"):
        return None
    return text


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


def _to_lf(data):
    """Turn CRLF into LF; return (converted, carry) where carry is a trailing CR."""
    carry = b""
    if data.endswith(b"\r"):
        data, carry = data[:-1], b"\r"
    # A CR first (memchr: ten times faster than looking for the pair in a piece
    # that has none, as most have).
    if b"\r" in data and b"\r\n" in data:
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
            # Only white space before the colon is no name either: not a field.
            name = line[:colon].rstrip(b" \t") or None
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
