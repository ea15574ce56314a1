"""The message as Sieve sees it: header fields (editable), size, MIME decoding.

MessageView wraps the host's message object, which offers header_fields() ->
[(name, unfolded value)] and read_bytes() -> the raw message. On top of it:
header_values(name) (raw), decoded_values(name) (RFC 2047 decoded, as the header
test wants), size, and the editheader edits (added/deleted fields) that later
tests and the stored copy see.

RawMessage is a message made from bytes (sieve-test reads a file): it parses the
header block like Dovecot does (unfolding turns a folded TAB into a space, values
are trimmed).

decode_words(text) decodes RFC 2047 encoded-words; adjacent encoded-words
separated only by white space join without it (RFC 2047 6.2).

Errors: none; undecodable text is kept as it is (invalid bytes become U+FFFD).
"""

HEADER_PARSE_LIMIT = 1 << 20


class RawMessage:
    """A message held in memory as bytes (the sieve-test and test-suite source)."""

    def __init__(self, data):
        self.data = data
        self._fields = None

    def header_fields(self):
        if self._fields is None:
            self._fields = parse_header_block(self.data)
        return self._fields

    def read_bytes(self):
        return self.data


def header_block_end(data):
    """Offset of the body (after the blank line) in data, or len(data)."""
    pos = 0
    n = len(data)
    while pos < n:
        nl = data.find(b"\n", pos)
        if nl < 0:
            return n
        line = data[pos:nl]
        if line == b"" or line == b"\r":
            return nl + 1
        pos = nl + 1
    return n


def parse_header_block(data):
    """[(name, value)] of a raw message's header, unfolded as Dovecot does."""
    end = header_block_end(data)
    block = data[:min(end, HEADER_PARSE_LIMIT)]
    fields = []
    name = None
    parts = []
    for raw in block.split(b"\n"):
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        if raw[:1] in (b" ", b"\t") and name is not None:
            # A folded TAB becomes a space (Dovecot's CLEAN_ONELINE).
            parts.append(b" " + raw[1:] if raw[:1] == b"\t" else raw)
            continue
        if name is not None:
            fields.append(_make_field(name, parts))
            name = None
        colon = raw.find(b":")
        if colon <= 0:
            if raw == b"":
                break
            continue
        name = raw[:colon].rstrip(b" \t")
        parts = [raw[colon + 1:]]
    if name is not None:
        fields.append(_make_field(name, parts))
    return fields


def _make_field(name, parts):
    value = b"".join(parts).strip(b" \t")
    return (name.decode("utf-8", "replace"),
            value.replace(b"\0", b"").decode("utf-8", "replace"))


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

class MessageView:
    """Header access for the interpreter, with editheader edits applied."""

    def __init__(self, message):
        self.message = message
        self._fields = None       # list of [name, value] once edited/read
        self._index = None
        self._raw = None
        self._size = None
        self.edited = False
        self._mime = None

    def fields(self):
        if self._fields is None:
            self._fields = [(n, v) for n, v in self.message.header_fields()]
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
        return [decode_words(v) if "=?" in v else v for v in self.header_values(name)]

    def raw_bytes(self):
        if self._raw is None:
            self._raw = self.message.read_bytes()
        return self._raw

    def size(self):
        if self._size is None:
            size = getattr(self.message, "size", None)
            if callable(size):
                size = size()
            if size is None:
                size = len(self.raw_bytes())
            self._size = size
        return self._size

    # editheader --------------------------------------------------------------------

    def set_fields(self, fields):
        self._fields = fields
        self._index = None
        self.edited = True
        self._mime = None

    def body_bytes(self):
        data = self.raw_bytes()
        return data[header_block_end(data):]

    def mime(self):
        """The MIME tree of the (edited) message; see mime.py."""
        if self._mime is None:
            from .mime import parse_message
            self._mime = parse_message(self.fields(), self.body_bytes())
        return self._mime
