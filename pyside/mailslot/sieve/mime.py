"""MIME structure for Sieve's body, mime, foreverypart and extracttext tests.

parse_message(fields, body) builds the part tree of a message (RFC 2045/2046):
a Part has its header fields, content type and parameters, and either a body
(a leaf), children (multipart, with preamble and epilogue) or an enclosed
message (message/rfc822). flat_parts() lists the parts in the order Pigeonhole
walks them: each part, then what it contains, a multipart's epilogue after its
children.

Part.content() gives a part's body transfer-decoded (base64, quoted-printable)
and, for text parts, converted from its charset to str; text() additionally
turns text/html and application/xhtml+xml into plain text the way Dovecot's
mail-html2text does (tags become a space, entities are decoded, script, style
and comments are dropped).

Limits: at most MAX_MIME_DEPTH levels and MAX_MIME_PARTS parts are parsed; what
is beyond is treated as the body of the last part. Nothing here raises for
malformed input.
"""

from .limits import MAX_MIME_DEPTH, MAX_MIME_PARTS
from .mail import decode_charset, decode_words, header_block_end, parse_header_block


class Part:
    __slots__ = ("fields", "ctype", "params", "disposition", "disp_params", "raw",
                 "children", "preamble", "epilogue", "message", "parent",
                 "is_epilogue", "_content", "_text", "header_text")

    def __init__(self, fields, parent=None):
        self.fields = fields
        self.parent = parent
        self.ctype, self.params = parse_content_type(
            _first(fields, "content-type"),
            "message/rfc822" if parent is not None and
            parent.ctype == "multipart/digest" else "text/plain")
        disp = _first(fields, "content-disposition")
        self.disposition, self.disp_params = parse_parameters(disp) if disp else ("", {})
        self.raw = b""
        self.children = []
        self.preamble = None
        self.epilogue = None
        self.message = None
        self.is_epilogue = False
        self._content = None
        self._text = None
        self.header_text = None

    @property
    def maintype(self):
        return self.ctype.split("/", 1)[0]

    def header_values(self, name):
        low = name.lower()
        return [v for n, v in self.fields if n.lower() == low]

    def content(self):
        """The decoded body as str (the body test's :content / :raw view)."""
        if self._content is None:
            self._content = _decode_body(self, self.raw)
        return self._content

    def text(self):
        """The body as plain text (:text, extracttext)."""
        if self._text is None:
            content = self.content()
            if self.ctype in ("text/html", "application/xhtml+xml") and content:
                content = html_to_text(content)
            self._text = content
        return self._text


def _first(fields, name):
    for n, v in fields:
        if n.lower() == name:
            return v
    return None


_TSPECIALS = '()<>@,;:\\"/[]?='


def parse_parameters(value, keep_case=False):
    """'token; a=b; c="d"' -> (lower-case token, {name: value}); RFC 2231 lightly.

    keep_case keeps the token as written (the mime extension's :type reports it so).
    """
    if value is None:
        return "", {}
    i = 0
    n = len(value)
    while i < n and value[i] in " \t\r\n":
        i += 1
    start = i
    while i < n and value[i] != ";":
        i += 1
    token = value[start:i].strip()
    if not keep_case:
        token = token.lower()
    params = {}
    while i < n:
        i += 1  # ';'
        while i < n and value[i] in " \t\r\n":
            i += 1
        eq = value.find("=", i)
        if eq < 0:
            break
        name = value[i:eq].strip().lower()
        i = eq + 1
        while i < n and value[i] in " \t\r\n":
            i += 1
        if i < n and value[i] == '"':
            i += 1
            buf = []
            while i < n and value[i] != '"':
                if value[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(value[i])
                i += 1
            i += 1
            pval = "".join(buf)
            while i < n and value[i] != ";":
                i += 1
        else:
            start = i
            while i < n and value[i] != ";":
                i += 1
            pval = value[start:i].strip()
        if name:
            params[name] = pval
    # RFC 2231 continuations/charset: name*0*=..., name*=utf-8''...
    merged = {}
    for key in sorted(params):
        if "*" in key:
            base = key.split("*", 1)[0]
            merged.setdefault(base, []).append((key, params[key]))
    for base, pieces in merged.items():
        text = []
        charset = None
        for key, val in sorted(pieces, key=lambda kv: _section(kv[0])):
            if key.endswith("*"):
                if charset is None and val.count("'") >= 2:
                    charset, _, val = val.split("'", 2)
                val = _pct_decode(val, charset)
            text.append(val)
        params[base] = "".join(text)
    return token, params


def _section(key):
    parts = key.split("*")
    try:
        return int(parts[1]) if len(parts) > 1 and parts[1] else 0
    except ValueError:
        return 0


def _pct_decode(text, charset):
    data = bytearray()
    i = 0
    raw = text.encode("utf-8", "surrogateescape")
    while i < len(raw):
        c = raw[i]
        if c == 0x25 and i + 3 <= len(raw) and _ishex(raw[i + 1:i + 3]):
            data.append(int(raw[i + 1:i + 3], 16))
            i += 3
            continue
        data.append(c)
        i += 1
    return decode_charset(bytes(data), charset or "us-ascii")


def parse_content_type(value, default="text/plain"):
    """(type/subtype lower-cased, params); invalid or missing -> the default."""
    if value is None:
        return default, {}
    token, params = parse_parameters(value)
    if "/" not in token:
        return default, params
    main, _, sub = token.partition("/")
    main, sub = main.strip(), sub.strip()
    if not main or not sub or any(c in _TSPECIALS or c.isspace() for c in main + sub):
        return default, params
    return f"{main}/{sub}", params


def _decode_body(part, raw):
    cte = (_first(part.fields, "content-transfer-encoding") or "").strip().lower()
    data = raw
    if cte == "base64":
        data = _b64(raw)
    elif cte == "quoted-printable":
        data = _qp(raw)
    if part.maintype == "text" or part.maintype == "message" or \
            part.ctype == "application/xhtml+xml":
        return decode_charset(data, part.params.get("charset", "us-ascii"))
    return data.decode("utf-8", "replace")


def _b64(raw):
    import binascii
    clean = bytes(c for c in raw if c in
                  b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")
    clean = clean[:len(clean) - len(clean) % 4] if len(clean) % 4 == 1 else clean
    clean += b"=" * (-len(clean) % 4)
    try:
        return binascii.a2b_base64(clean)
    except binascii.Error:
        return b""


def _qp(raw):
    out = bytearray()
    for line in raw.split(b"\n"):
        had_cr = line.endswith(b"\r")
        if had_cr:
            line = line[:-1]
        stripped = line.rstrip(b" \t")
        soft = stripped.endswith(b"=")
        if soft:
            stripped = stripped[:-1]
        i = 0
        n = len(stripped)
        while i < n:
            c = stripped[i]
            if c == 0x3D and i + 3 <= n and _ishex(stripped[i + 1:i + 3]):
                out.append(int(stripped[i + 1:i + 3], 16))
                i += 3
                continue
            out.append(c)
            i += 1
        if not soft:
            out += b"\r\n" if had_cr else b"\n"
    if raw and not raw.endswith(b"\n") and out.endswith(b"\n"):
        del out[-1:]
        if out.endswith(b"\r"):
            del out[-1:]
    return bytes(out)


def _ishex(pair):
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


# -- parsing -----------------------------------------------------------------------

def _split_lines(data):
    """Lines with their endings (LF or CRLF)."""
    return data.splitlines(keepends=True)


def _boundary_of(line, boundary):
    """'open', 'close' or None: is line a delimiter of boundary?"""
    b = b"--" + boundary
    if not line.startswith(b):
        return None
    rest = line[len(b):].rstrip(b"\r\n")
    if rest.startswith(b"--"):
        return "close"
    if rest.strip(b" \t") == b"":
        return "open"
    return None


class _Counter:
    def __init__(self):
        self.parts = 0


def parse_message(fields, body, depth=0, parent=None, counter=None):
    """Build the part tree from header fields and body bytes."""
    counter = counter or _Counter()
    part = Part(fields, parent)
    counter.parts += 1
    _fill(part, body, depth, counter)
    return part


def _fill(part, body, depth, counter):
    if part.maintype == "multipart" and "boundary" in part.params and \
            depth < MAX_MIME_DEPTH and counter.parts < MAX_MIME_PARTS:
        boundary = part.params["boundary"].encode("utf-8", "surrogateescape")
        lines = _split_lines(body)
        preamble = []
        sections = []
        current = None
        epilogue = None
        for line in lines:
            if epilogue is not None:
                epilogue.append(line)
                continue
            kind = _boundary_of(line, boundary) if line.startswith(b"--") else None
            if kind == "open":
                current = []
                sections.append(current)
            elif kind == "close":
                epilogue = []
            elif current is None:
                preamble.append(line)
            else:
                current.append(line)
        part.preamble = _strip_last_eol(b"".join(preamble)) if preamble else b""
        part.raw = part.preamble
        if epilogue:
            part.epilogue = b"".join(epilogue)
        for section in sections:
            if counter.parts >= MAX_MIME_PARTS:
                break
            data = _strip_last_eol(b"".join(section))
            end = header_block_end(data)
            child_fields = parse_header_block(data) if end > 0 else []
            child = Part(child_fields, part)
            counter.parts += 1
            part.children.append(child)
            _fill(child, data[end:], depth + 1, counter)
        return
    if part.ctype == "message/rfc822" and depth < MAX_MIME_DEPTH and \
            counter.parts < MAX_MIME_PARTS:
        raw = _decode_transfer(part, body)
        end = header_block_end(raw)
        inner_fields = parse_header_block(raw)
        part.header_text = raw[:end]
        part.raw = body
        part.message = parse_message(inner_fields, raw[end:], depth + 1, part, counter)
        return
    part.raw = body


def _decode_transfer(part, body):
    cte = (_first(part.fields, "content-transfer-encoding") or "").strip().lower()
    if cte == "base64":
        return _b64(body)
    if cte == "quoted-printable":
        return _qp(body)
    return body


def _strip_last_eol(data):
    """The line break before a boundary belongs to the boundary (RFC 2046 5.1.1)."""
    if data.endswith(b"\r\n"):
        return data[:-2]
    if data.endswith(b"\n"):
        return data[:-1]
    return data


class Entry:
    """One item of the flat part list (a part, or a multipart's epilogue)."""

    __slots__ = ("part", "epilogue")

    def __init__(self, part, epilogue=False):
        self.part = part
        self.epilogue = epilogue


def flat_parts(root):
    """Parts in Pigeonhole's order: part, its contents, a multipart's epilogue."""
    out = []
    stack = [(root, False)]
    while stack:
        part, epi = stack.pop()
        if epi:
            out.append(Entry(part, True))
            continue
        out.append(Entry(part))
        pending = []
        if part.message is not None:
            pending.append((part.message, False))
        for child in part.children:
            pending.append((child, False))
        if part.epilogue:
            pending.append((part, True))
        stack.extend(reversed(pending))
    return out


def entry_content(entry, text=False):
    """The body test's value for an entry (None: the entry has no body)."""
    part = entry.part
    if entry.epilogue:
        return decode_charset(part.epilogue or b"", "us-ascii")
    if part.message is not None:
        # message/rfc822: the enclosed header is this part's content.
        return (part.header_text or b"").decode("utf-8", "replace")
    if part.children or part.maintype == "multipart":
        return decode_charset(part.preamble or b"", "us-ascii")
    return part.text() if text else part.content()


def wanted(types, ctype):
    """Pigeonhole's _is_wanted_content_type: "" all, "text" main type, full."""
    main = ctype.split("/", 1)[0]
    for t in types:
        if t == "":
            return True
        if "/" not in t:
            if t.lower() == main:
                return True
        elif t.lower() == ctype:
            return True
    return False


# -- html2text ----------------------------------------------------------------------

_WS = " \t\r\n"


def _entity(name):
    import html.entities
    cp = html.entities.name2codepoint.get(name)
    if cp is None:
        low = name.lower()
        for key, value in html.entities.name2codepoint.items():
            if key.lower() == low:
                cp = value
                break
    if cp is not None:
        return chr(cp)
    if name.startswith("#x"):
        digits = name[2:]
        if digits and all(c in "0123456789abcdefABCDEF" for c in digits):
            return _chr(int(digits, 16))
    elif name.startswith("#"):
        digits = name[1:]
        if digits.isdigit():
            return _chr(int(digits))
    return None


def _chr(cp):
    if 0 <= cp <= 0x10FFFF and not (0xD800 <= cp <= 0xDFFF):
        return chr(cp)
    return ""


def _add_space(out):
    if out and out[-1][-1:] not in ("", " ", "\t", "\r", "\n"):
        out.append(" ")


def html_to_text(html):
    """Plain text of an HTML document, as Dovecot's mail-html2text makes it."""
    out = []
    i = 0
    n = len(html)
    low = None
    while i < n:
        c = html[i]
        if c == "<":
            rest = html[i + 1:i + 13]
            if rest.startswith("!--"):
                end = html.find("--", i + 4)
                # Comment: ends at "--" followed by optional white space and ">".
                while end >= 0:
                    j = end + 2
                    while j < n and html[j] in _WS:
                        j += 1
                    if j < n and html[j] == ">":
                        i = j + 1
                        break
                    end = html.find("--", end + 2)
                else:
                    i = n
                continue
            if low is None:
                low = html.lower()
            if low.startswith("script", i + 1) and i + 7 < n and \
                    (html[i + 7] in _WS or html[i + 7] == ">"):
                end = low.find("</script>", i + 8)
                i = n if end < 0 else end + 9
                _add_space(out)
                continue
            if low.startswith("style", i + 1) and i + 6 < n and \
                    (html[i + 6] in _WS or html[i + 6] == ">"):
                end = low.find("</style>", i + 7)
                i = n if end < 0 else end + 8
                _add_space(out)
                continue
            if low.startswith("![cdata[", i + 1):
                end = html.find("]]>", i + 9)
                out.append(html[i + 9:n if end < 0 else end])
                i = n if end < 0 else end + 3
                continue
            # An ordinary tag: skip to '>' outside quotes.
            j = i + 1
            quote = None
            while j < n:
                ch = html[j]
                if quote:
                    if ch == "\\":
                        j += 2
                        continue
                    if ch == quote:
                        quote = None
                elif ch in "\"'":
                    quote = ch
                elif ch == ">":
                    break
                j += 1
            i = j + 1
            if j < n:
                _add_space(out)
            continue
        if c == "&":
            j = i + 1
            while j < n and j - i - 1 < 10 and html[j] != ";" and html[j] not in _WS:
                j += 1
            if j < n and html[j] == ";" and j - i - 1 < 10:
                value = _entity(html[i + 1:j])
                if value:
                    out.append(value)
                i = j + 1
            else:
                i += 1   # a broken entity: the '&' is dropped
            continue
        j = i
        while j < n and html[j] not in "<&":
            j += 1
        out.append(html[i:j])
        i = j
    return "".join(out)


def decode_header_value(value):
    return decode_words(value)
