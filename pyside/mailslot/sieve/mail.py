"""The message as Sieve sees it: header fields (editable), size, the body's bytes.

MessageView wraps the host's message object, which offers header_buffer() ->
(buffer, end) (the header is buffer[:end]) and read_bytes() -> the whole raw
message as one buffer (bytes or bytearray, LF or CRLF line ends; read only by
tests that need the body, and by size when the host has no size()). The view
parses the whole header with the delivery's parser (message.iter_fields): no
field count or byte limit, only the run's memory budget (sieve_max_memory, see
memory.py) bounds it. On top of it: header_values(name) (raw), decoded_values(name)
(RFC 2047 decoded, as the header test wants), size, and the editheader edits
(add_field / delete_fields) that later tests and the stored copy see.

An edited copy keeps every original line it did not edit byte for byte:
HeaderSnapshot.pieces() lists (buffer, start, end) ranges of the original message
and the bytes of the added fields, so a stored copy is written without copying
the message (message.with_edited_header).

RawMessage is a message made from bytes (sieve-test reads a file).

decode_words(text) decodes RFC 2047 encoded-words; adjacent encoded-words
separated only by white space join without it (RFC 2047 6.2).

Errors: none for malformed input (invalid bytes become U+FFFD);
MemoryLimitExceeded when the header needs more than the run's budget.
"""

from ..message import field_text, header_end, iter_fields
from .memory import FIELD_COST, Budget, text_cost

# The offset of the body in a raw message (after the blank line), or its length.
header_block_end = header_end


class RawMessage:
    """A message held in memory as bytes (the sieve-test and test-suite source)."""

    def __init__(self, data):
        self.data = data

    def header_buffer(self):
        return self.data, header_end(self.data)

    def header_fields(self):
        data, end = self.header_buffer()
        return [field_text(n, v) for _, _, n, v in iter_fields(data, 0, end)]

    def read_bytes(self):
        return self.data

    def size(self):
        return len(self.data)


# -- RFC 2047 ---------------------------------------------------------------------

def _decode_word(charset, encoding, text):
    charset = charset.split("*", 1)[0]   # RFC 2231 language suffix
    if encoding in "qQ":
        data = bytearray()
        i = 0
        raw = text.encode("latin-1", "replace")
        n = len(raw)
        while i < n:
            c = raw[i]
            if c == 0x5F:    # '_'
                data.append(0x20)
            elif c == 0x3D and i + 2 < n and _is_hex2(raw[i + 1:i + 3]):
                data.append(int(raw[i + 1:i + 3], 16))
                i += 2
            else:
                data.append(c)
            i += 1
        data = bytes(data)
    else:
        import binascii
        raw = text.encode("latin-1", "replace")
        raw = raw + b"=" * (-len(raw) % 4)
        try:
            data = binascii.a2b_base64(raw)
        except binascii.Error:
            return None
    return decode_charset(data, charset)


def _is_hex2(pair):
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def decode_charset(data, charset):
    """Bytes in a MIME charset to str (unknown charset: as UTF-8)."""
    cs = (charset or "utf-8").strip().strip('"').lower()
    if cs in ("utf-8", "utf8", "us-ascii", "ascii", ""):
        return data.decode("utf-8", "replace")
    try:
        return data.decode(cs, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def decode_words(text):
    """Decode RFC 2047 encoded-words in a header value."""
    if "=?" not in text:
        return text
    out = []
    pos = 0
    n = len(text)
    last_was_word = False
    pending_ws = ""
    while pos < n:
        start = text.find("=?", pos)
        if start < 0:
            out.append(pending_ws + text[pos:])
            pending_ws = ""
            break
        between = text[pos:start]
        word = _match_word(text, start)
        if word is None:
            out.append(pending_ws + text[pos:start + 2])
            pending_ws = ""
            pos = start + 2
            last_was_word = False
            continue
        end, charset, enc, payload = word
        decoded = _decode_word(charset, enc, payload)
        if decoded is None:
            out.append(pending_ws + between + text[start:end])
            pending_ws = ""
            last_was_word = False
        else:
            if last_was_word and between.strip(" \t\r\n") == "":
                out.append(decoded)
            else:
                out.append(between + decoded)
            last_was_word = True
        pos = end
    return "".join(out)


def _match_word(text, start):
    # =?charset?X?payload?=
    q1 = text.find("?", start + 2)
    if q1 < 0:
        return None
    charset = text[start + 2:q1]
    if not charset or any(c in charset for c in " \t\r\n()<>@,;:\"/[]?.="):
        if not charset or any(c in charset for c in " \t\r\n\"?="):
            return None
    if q1 + 2 >= len(text) or text[q1 + 2] != "?":
        return None
    enc = text[q1 + 1]
    if enc not in "qQbB":
        return None
    end = text.find("?=", q1 + 3)
    if end < 0:
        return None
    payload = text[q1 + 3:end]
    if " " in payload or "\t" in payload:
        return None
    return end + 2, charset, enc, payload


# -- the view -----------------------------------------------------------------------

# Where an added field goes in the stored copy (a field's "span" is its original
# byte range, or one of these).
TOP, BOTTOM = "top", "bottom"


class HeaderSnapshot:
    """The header as one editheader state left it (immutable): fields and spans."""

    __slots__ = ("fields", "spans", "buf", "hend", "originals")

    def __init__(self, fields, spans, buf, hend, originals):
        self.fields = fields          # tuple of (name, value)
        self.spans = spans            # tuple: (start, stop), TOP or BOTTOM
        self.buf = buf                # the original message's buffer
        self.hend = hend              # end of its header block (blank line included)
        self.originals = originals    # every original field's span, in order

    def pieces(self):
        """The edited message as (buffer, start, end) ranges and bytes.

        Added fields first (top) and last (bottom); between them the original
        header with the deleted fields cut out, every other byte as it was
        (lines that are no field included); then the blank line and the body.
        Adjacent ranges are merged, so the list grows with the edits only.
        """
        buf = self.buf
        out = [_field_line(f) for f, sp in zip(self.fields, self.spans) if sp == TOP]
        kept = (sp for sp in self.spans if isinstance(sp, tuple))
        want = next(kept, None)
        lines_end = _blank_line_start(buf, self.hend)
        run_start = 0          # the original bytes kept so far run from here
        for span in self.originals:
            if span == want:
                want = next(kept, None)
                continue
            if span[0] > run_start:
                out.append((buf, run_start, span[0]))
            run_start = span[1]    # a deleted field: skip its bytes
        if lines_end > run_start:
            out.append((buf, run_start, lines_end))
        out += [_field_line(f) for f, sp in zip(self.fields, self.spans)
                if sp == BOTTOM]
        if len(buf) > lines_end:
            out.append((buf, lines_end, len(buf)))     # the blank line and the body
        return out


def _field_line(field):
    name, value = field
    clean = value.replace("\r", " ").replace("\n", " ")
    return f"{name}: {clean}\n".encode("utf-8", "surrogateescape")


def _blank_line_start(buf, hend):
    """Where the blank line ending the header starts (hend when there is none)."""
    if hend == 0 or buf[hend - 1] != 10:
        return hend
    start = buf.rfind(b"\n", 0, hend - 1) + 1
    line = buf[start:hend - 1]
    return start if line in (b"", b"\r") else hend


class MessageView:
    """Header access for the interpreter, with editheader edits applied."""

    def __init__(self, message, budget=None):
        self.message = message
        self.budget = budget if budget is not None else Budget(None)
        self._fields = None       # tuple of (name, value)
        self._spans = None        # tuple of spans (see HeaderSnapshot)
        self._originals = ()
        self._buf = None
        self._hend = 0
        self._index = None
        self._decoded = {}        # lower-case name -> decoded values (see below)
        self._size = None
        self.edited = False
        self.mime_cache = None    # mime.message_tree() keeps the part tree here

    def _load(self):
        buf, hend = self.message.header_buffer()
        fields = []
        spans = []
        charge = self.budget.charge
        for first, stop, name, value in iter_fields(buf, 0, hend):
            charge(FIELD_COST + 2 * (stop - first), "the message header")
            fields.append(field_text(name, value))
            spans.append((first, stop))
        self._buf, self._hend = buf, hend
        self._fields = tuple(fields)
        self._spans = self._originals = tuple(spans)

    def fields(self):
        if self._fields is None:
            self._load()
        return self._fields

    def _build_index(self):
        index = {}
        for name, value in self.fields():
            index.setdefault(name.lower(), []).append(value)
        self._index = index
        return index

    def header_values(self, name):
        index = self._index or self._build_index()
        return index.get(name.lower(), [])

    def decoded_values(self, name):
        """The values of the fields called name with RFC 2047 words decoded,
        decoded once per message (a filter list tests the same Subject once per
        rule); like header_values(), the list returned is shared: not to be
        changed."""
        key = name.lower()
        found = self._decoded.get(key)
        if found is None:
            found = []
            for value in self.header_values(key):
                if "=?" in value:
                    # Kept for the run: charged like any text the run holds.
                    self.budget.charge(text_cost(len(value)), "a decoded header")
                    value = decode_words(value)
                found.append(value)
            self._decoded[key] = found
        return found

    def size(self):
        """The message's size in bytes; after editheader, the edited message's
        (Pigeonhole's size test sees the edited mail): minus the deleted fields'
        original lines, plus the added ones, with the header's line ending."""
        if self._size is None:
            size = getattr(self.message, "size", None)
            if callable(size):
                size = size()
            if not isinstance(size, int):
                size = len(self.message.read_bytes())
            self._size = size
        if not self.edited:
            return self._size
        kept = {sp for sp in self._spans if isinstance(sp, tuple)}
        removed = sum(stop - start for start, stop in self._originals
                      if (start, stop) not in kept)
        crlf = 1 if self._buf.find(b"\r\n", 0, self._hend) >= 0 else 0
        added = sum(len(_field_line(f)) + crlf
                    for f, sp in zip(self._fields, self._spans)
                    if not isinstance(sp, tuple))
        return self._size - removed + added

    def raw_bytes(self):
        """The whole raw message (the host's one buffer; read-only)."""
        return self.message.read_bytes()

    def body_range(self):
        """(buffer, start, end): the body of the message (the whole message read)."""
        data = self.message.read_bytes()
        if self._buf is None or self._buf is not data:
            # The header block was read before the rest: find it in the whole.
            hend = header_end(data)
        else:
            hend = self._hend
        return data, hend, len(data)

    # editheader --------------------------------------------------------------------

    def add_field(self, name, value, last):
        """addheader: a new field at the top (or the bottom with :last)."""
        self.fields()
        self.budget.charge(FIELD_COST + len(name) + 4 * len(value), "an added header")
        if last:
            self._set(self._fields + ((name, value),), self._spans + (BOTTOM,))
        else:
            self._set(((name, value),) + self._fields, (TOP,) + self._spans)

    def delete_fields(self, positions):
        """deleteheader: remove the fields at these positions of fields()."""
        drop = set(positions)
        keep = [i for i in range(len(self.fields())) if i not in drop]
        self._set(tuple(self._fields[i] for i in keep),
                  tuple(self._spans[i] for i in keep))

    def _set(self, fields, spans):
        self.budget.charge(16 * len(fields), "an edited header")
        self._fields, self._spans = fields, spans
        self._index = None
        self._decoded = {}
        self.edited = True
        self.mime_cache = None

    def snapshot(self):
        """The header as it is now, for an action that files the message."""
        self.fields()
        buf = self._buf
        data = self.message.read_bytes()
        if buf is not data:
            # The host read the rest after the header: spans are the same offsets.
            buf = data
        return HeaderSnapshot(self._fields, self._spans, buf, self._hend,
                              self._originals)
