"""The text of message bodies for Sieve, decoded in pieces (body, extracttext).

text_chunks(kind, part, rng) yields the str pieces of one body value without
building it whole: the bytes of rng = (buffer, start, end) are read STREAM_CHUNK
at a time, transfer-decoded (base64, quoted-printable) and converted from the
part's charset with incremental decoders, so the body test can match :contains
and :is over a part of any size in constant memory. materialize() joins the
pieces into one str when a match needs the whole value (:matches, :regex, ...,
HTML turned into text), charging it to the run's memory budget first.

kind is "raw" (the undecoded body, UTF-8), "ascii" (a preamble or epilogue),
"header" (an enclosed message's header) or "part" (a leaf, decoded as its
Content-Transfer-Encoding and charset say).

Errors: none for malformed input (invalid bytes become U+FFFD, broken encodings
are decoded as far as they go); MemoryLimitExceeded from the budget.

Security: the bytes are a sender's; a piece is at most STREAM_CHUNK bytes before
decoding (at most four bytes a character after), and whatever is built whole is
charged first, so no message makes this hold more than sieve_max_memory allows.
"""

import codecs

from .memory import STREAM_CHUNK

_B64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_NOT_B64 = bytes(c for c in range(256) if c not in _B64_ALPHABET)
_HEX = b"0123456789abcdefABCDEF"


def str_cost(text):
    """What a str costs in memory (CPython stores 1, 2 or 4 bytes a character)."""
    n = len(text)
    if n == 0 or text.isascii():
        return n + 64
    top = ord(max(text))
    return n * (1 if top < 0x100 else 2 if top < 0x10000 else 4) + 80


def materialize(chunks, budget, what):
    """Join text pieces into one str, charging it; return (text, cost).

    The caller releases cost when it drops the text.
    """
    pieces = []
    cost = 0
    try:
        for piece in chunks:
            c = str_cost(piece)
            budget.charge(c, what)
            cost += c
            pieces.append(piece)
        budget.charge(cost, what)          # the joined copy beside the pieces
    except BaseException:
        budget.release(cost)
        raise
    text = "".join(pieces)
    del pieces
    budget.release(cost)
    return text, cost


def part_text(part, text, budget):
    """A leaf part's whole decoded body (:content) or plain text (:text)."""
    value, cost = materialize(text_chunks("part", part, part.body, text, budget),
                              budget, "a body part's text")
    budget.release(cost)
    return value


# -- pieces -----------------------------------------------------------------------

def _byte_chunks(rng):
    buf, start, end = rng
    pos = start
    while pos < end:
        stop = min(pos + STREAM_CHUNK, end)
        yield bytes(buf[pos:stop])
        pos = stop


def _decoded(byte_chunks, charset):
    cs = (charset or "utf-8").strip().strip('"').lower()
    if cs in ("utf-8", "utf8", "us-ascii", "ascii", ""):
        cs = "utf-8"
    try:
        decoder = codecs.getincrementaldecoder(cs)("replace")
    except LookupError:
        decoder = codecs.getincrementaldecoder("utf-8")("replace")
    for data in byte_chunks:
        text = decoder.decode(data)
        if text:
            yield text
    text = decoder.decode(b"", True)
    if text:
        yield text


# RFC 2045 6.1 (and RFC 3030's binary): what a part's content can be decoded from.
KNOWN_TRANSFER_ENCODINGS = ("7bit", "8bit", "binary", "quoted-printable", "base64")


def text_chunks(kind, part, rng, html=False, budget=None):
    """The str pieces of one body value (see the module docstring)."""
    if kind == "header":
        # An enclosed message's header as Pigeonhole gives it: its fields with
        # CRLF line ends, without the empty line that ends it.
        buf, start, end = rng
        data = bytes(buf[start:end])
        if data.endswith(b"\r\n\r\n"):
            data = data[:-2]
        elif data.endswith(b"\n\n"):
            data = data[:-1]
        yield from _decoded([data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")],
                            "utf-8")
        return
    if kind != "part":
        yield from _decoded(_byte_chunks(rng), "utf-8")
        return
    raw_cte = _first(part.fields, "content-transfer-encoding")
    cte = (raw_cte or "").strip().lower()
    if raw_cte is not None and cte not in KNOWN_TRANSFER_ENCODINGS:
        # A transfer encoding that cannot be undone: Pigeonhole gives the part
        # no content (it matches nothing but :is "").
        return
    data = transfer_chunks(cte, rng)
    if part.maintype in ("text", "message") or part.ctype == "application/xhtml+xml":
        pieces = _decoded(data, part.params.get("charset", "us-ascii"))
    else:
        pieces = _decoded(data, "utf-8")
    if html and part.ctype in ("text/html", "application/xhtml+xml"):
        # HTML to text needs the whole document: one piece, charged.
        if budget is None:
            whole = "".join(pieces)
        else:
            whole, cost = materialize(pieces, budget, "an HTML part")
            budget.release(cost)
            budget.charge(2 * cost, "an HTML part's text")
        try:
            if whole:
                from .html2text import html_to_text
                yield html_to_text(whole)
        finally:
            if budget is not None:
                budget.release(2 * cost)
        return
    yield from pieces


def _first(fields, name):
    for n, v in fields:
        if n.lower() == name:
            return v
    return None


def transfer_chunks(cte, rng):
    """Bytes pieces of rng with the transfer encoding cte undone."""
    if cte == "base64":
        return _b64_chunks(_byte_chunks(rng))
    if cte == "quoted-printable":
        return _qp_chunks(_byte_chunks(rng))
    return _byte_chunks(rng)


def decode_transfer(cte, buf, start, end):
    """The whole of buf[start:end] with the transfer encoding cte undone."""
    return b"".join(transfer_chunks(cte, (buf, start, end)))


def _b64_chunks(chunks):
    import binascii
    carry = b""
    for data in chunks:
        clean = carry + data.translate(None, _NOT_B64)
        cut = len(clean) - len(clean) % 4
        carry = clean[cut:]
        if cut:
            yield binascii.a2b_base64(clean[:cut])
    # The end: a lone character is dropped, the rest padded (as before: lenient).
    if len(carry) % 4 == 1:
        carry = carry[:-1]
    if carry:
        try:
            yield binascii.a2b_base64(carry + b"=" * (-len(carry) % 4))
        except binascii.Error:
            pass


def _qp_chunks(chunks):
    """Quoted-printable, line by line: a soft break (=) joins lines, =XX is a
    byte, trailing white space is dropped; a body not ending in a line break
    gets none added."""
    rest = b""
    held = b""      # the last bytes out, kept back for the end rule
    for data in chunks:
        rest += data
        cut = rest.rfind(b"\n")
        if cut < 0:
            continue
        out = bytearray(held)
        for line in rest[:cut].split(b"\n"):
            _qp_line(line, out)
        rest = rest[cut + 1:]
        held = bytes(out[-2:])
        if len(out) > 2:
            yield bytes(out[:-2])
    out = bytearray(held)
    _qp_line(rest, out)
    if rest and out.endswith(b"\n"):
        # A body not ending in a line break: its last line gets none.
        del out[-1:]
        if out.endswith(b"\r"):
            del out[-1:]
    if out:
        yield bytes(out)


def _qp_line(line, out):
    had_cr = line.endswith(b"\r")
    if had_cr:
        line = line[:-1]
    stripped = line.rstrip(b" \t")
    soft = stripped.endswith(b"=")
    if soft:
        stripped = stripped[:-1]
    pos = 0
    n = len(stripped)
    while pos < n:
        eq = stripped.find(b"=", pos)
        if eq < 0:
            out += stripped[pos:]
            break
        out += stripped[pos:eq]
        pair = stripped[eq + 1:eq + 3]
        if len(pair) == 2 and pair[0] in _HEX and pair[1] in _HEX:
            out.append(int(pair, 16))
            pos = eq + 3
        else:
            out.append(0x3D)
            pos = eq + 1
    if not soft:
        out += b"\r\n" if had_cr else b"\n"
