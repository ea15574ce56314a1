"""MIME structure for Sieve's body, mime, foreverypart and extracttext tests.

message_tree(view) builds (once per header version) the part tree of the
message a MessageView shows (RFC 2045/2046): a Part has its header fields,
content type and parameters, and either a body (a leaf), children (multipart,
with preamble and epilogue) or an enclosed message (message/rfc822).
flat_parts() lists the parts in the order Pigeonhole walks them: each part, then
what it contains, a multipart's epilogue after its children.

Parsing works by offsets: a part records (buffer, start, end) ranges into the one
copy of the message the host gave (a transfer-encoded message/rfc822 part is
decoded once into its own buffer); nothing splits the message into lines, so
memory is O(parts), not O(message x depth), whatever the nesting or the number
of lines. Each part is charged to the run's memory budget (memory.py). Decoding a
part's body (content(), chunks()) is in bodytext.py.

Limits: at most MAX_MIME_DEPTH levels and MAX_MIME_PARTS parts are parsed; what
is beyond is treated as the body of the last part. Nothing here raises for
malformed input (MemoryLimitExceeded is the run's memory bound).

Security: the structure is a sender's. Every search is a bounded find() over the
part's own range (time O(message x depth), depth at most MAX_MIME_DEPTH), no
recursion deeper than MAX_MIME_DEPTH, and memory O(parts), charged per part.
"""

from ..message import field_text, header_end, iter_fields
from .limits import MAX_MIME_DEPTH, MAX_MIME_PARTS
from .memory import FIELD_COST, PART_COST
from .mail import decode_charset


class Part:
    """One MIME part; ranges are (buffer, start, end) into a message buffer."""

    __slots__ = ("fields", "ctype", "params", "disposition", "disp_params", "body",
                 "children", "preamble_range", "epilogue_range", "message", "parent",
                 "header_range", "tree")

    def __init__(self, fields, parent, tree):
        self.fields = fields
        self.parent = parent
        self.tree = tree
        self.ctype, self.params = parse_content_type(
            _first(fields, "content-type"),
            "message/rfc822" if parent is not None and
            parent.ctype == "multipart/digest" else "text/plain")
        disp = _first(fields, "content-disposition")
        self.disposition, self.disp_params = parse_parameters(disp) if disp else ("", {})
        self.body = (b"", 0, 0)
        self.children = []
        self.preamble_range = None
        self.epilogue_range = None
        self.message = None
        self.header_range = None

    @property
    def maintype(self):
        return self.ctype.split("/", 1)[0]

    @property
    def raw(self):
        return _bytes(self.body)

    @property
    def preamble(self):
        return None if self.preamble_range is None else _bytes(self.preamble_range)

    @property
    def epilogue(self):
        return None if self.epilogue_range is None else _bytes(self.epilogue_range)

    @property
    def header_text(self):
        return None if self.header_range is None else _bytes(self.header_range)

    def header_values(self, name):
        low = name.lower()
        return [v for n, v in self.fields if n.lower() == low]

    def content(self):
        """The decoded body as str (the body test's :content view), charged."""
        from .bodytext import part_text
        return part_text(self, False, self.tree.budget)

    def text(self):
        """The body as plain text (:text, extracttext), charged."""
        from .bodytext import part_text
        return part_text(self, True, self.tree.budget)


def _bytes(rng):
    buf, start, end = rng
    return bytes(buf[start:end])


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


def _ishex(pair):
    return len(pair) == 2 and all(c in b"0123456789abcdefABCDEF" for c in pair)


def parse_content_type(value, default="text/plain"):
    """(type/subtype lower-cased, params); missing -> the default.

    A Content-Type that is there but invalid ("text", "text/plain/stupid", empty)
    gives "" -- a part of no type, which only a body :content "" test takes, as
    in Pigeonhole (not text/plain: Dovecot's parser rejects it).
    """
    if value is None:
        return default, {}
    token, params = parse_parameters(value)
    if "/" not in token:
        return "", params
    main, _, sub = token.partition("/")
    main, sub = main.strip(), sub.strip()
    if not main or not sub or any(c in _TSPECIALS or c.isspace() for c in main + sub):
        return "", params
    return f"{main}/{sub}", params


# -- parsing -----------------------------------------------------------------------

class _Tree:
    """What the parts of one tree share: the budget and the part count."""

    __slots__ = ("budget", "parts")

    def __init__(self, budget):
        self.budget = budget
        self.parts = 0


def message_tree(view):
    """The MIME tree of the message view shows (its edited header), cached."""
    if view.mime_cache is None:
        buf, start, end = view.body_range()
        tree = _Tree(view.budget)
        view.mime_cache = parse_message(list(view.fields()), buf, start, end, tree)
    return view.mime_cache


def parse_message(fields, buf, start, end, tree, depth=0, parent=None):
    """Build the part tree of a message: its header fields and its body range."""
    part = _new_part(fields, parent, tree)
    _fill(part, buf, start, end, depth)
    return part


def _new_part(fields, parent, tree):
    tree.budget.charge(PART_COST, "the MIME structure")
    tree.parts += 1
    return Part(fields, parent, tree)


def _parse_fields(buf, start, end, budget):
    fields = []
    for first, stop, name, value in iter_fields(buf, start, end):
        budget.charge(FIELD_COST + 2 * (stop - first), "a MIME part header")
        fields.append(field_text(name, value))
    return fields


def _fill(part, buf, start, end, depth):
    tree = part.tree
    if part.maintype == "multipart" and "boundary" in part.params and \
            depth < MAX_MIME_DEPTH and tree.parts < MAX_MIME_PARTS:
        boundary = part.params["boundary"].encode("utf-8", "surrogateescape")
        preamble_end, sections, epilogue = _split_multipart(
            buf, start, end, b"--" + boundary, MAX_MIME_PARTS - tree.parts)
        part.preamble_range = (buf, start, _strip_eol(buf, start, preamble_end))
        part.body = part.preamble_range
        if epilogue is not None and epilogue < end:
            part.epilogue_range = (buf, epilogue, end)
        for s_start, s_end in sections:
            if tree.parts >= MAX_MIME_PARTS:
                break
            s_end = _strip_eol(buf, s_start, s_end)
            hend = header_end(buf, s_start, s_end)
            fields = _parse_fields(buf, s_start, hend, tree.budget) if hend > s_start \
                else []
            child = _new_part(fields, part, tree)
            part.children.append(child)
            _fill(child, buf, hend, s_end, depth + 1)
        return
    if part.ctype == "message/rfc822" and depth < MAX_MIME_DEPTH and \
            tree.parts < MAX_MIME_PARTS:
        part.body = (buf, start, end)
        inner, istart, iend = _decode_transfer(part, buf, start, end, tree.budget)
        hend = header_end(inner, istart, iend)
        fields = _parse_fields(inner, istart, hend, tree.budget)
        part.header_range = (inner, istart, hend)
        part.message = parse_message(fields, inner, hend, iend, tree, depth + 1, part)
        return
    part.body = (buf, start, end)


def _split_multipart(buf, start, end, delim, limit):
    """Find the delimiter lines of a multipart body in buf[start:end].

    Returns (preamble end, [(section start, section end)], epilogue start or
    None); at most limit sections are kept (the rest are found, not listed). A delimiter is a line that starts with delim followed by white space
    only ("open") or by "--" ("close"); the line break before it belongs to it
    (RFC 2046 5.1.1), which _strip_eol removes from what precedes.
    """
    sections = []
    preamble_end = None
    current = None
    pos = start
    while pos < end:
        if pos + len(delim) <= end and buf[pos:pos + len(delim)] == delim and \
                (pos == start or buf[pos - 1] == 10):
            at = pos
        else:
            at = buf.find(b"\n" + delim, pos, end)
            if at < 0:
                break
            at += 1
        nl = buf.find(b"\n", at, end)
        line_end = end if nl < 0 else nl + 1
        rest = buf[at + len(delim):line_end]
        if rest.startswith(b"--"):
            kind = "close"
        elif rest.rstrip(b"\r\n").strip(b" \t") == b"":
            kind = "open"
        else:
            pos = at + 1
            continue
        if current is None:
            preamble_end = at
        elif len(sections) < limit:
            sections.append((current, at))
        if kind == "close":
            return preamble_end, sections, line_end
        current = line_end
        pos = line_end
    if current is None:
        return end, sections, None
    if len(sections) < limit:
        sections.append((current, end))
    return preamble_end, sections, None


def _strip_eol(buf, start, end):
    """End of buf[start:end] without its last line break."""
    if end - start >= 2 and buf[end - 2] == 13 and buf[end - 1] == 10:
        return end - 2
    if end > start and buf[end - 1] == 10:
        return end - 1
    return end


def _decode_transfer(part, buf, start, end, budget):
    """An encoded message/rfc822 body decoded into its own buffer (charged)."""
    cte = (_first(part.fields, "content-transfer-encoding") or "").strip().lower()
    if cte not in ("base64", "quoted-printable"):
        return buf, start, end
    from .bodytext import decode_transfer
    budget.charge(end - start, "a decoded message/rfc822 part")
    data = decode_transfer(cte, buf, start, end)
    return data, 0, len(data)


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
        if part.epilogue_range is not None:
            pending.append((part, True))
        stack.extend(reversed(pending))
    return out


def entry_range(entry):
    """What the body test reads of an entry: (kind, (buf, start, end)).

    kind is "ascii" (a preamble, an epilogue: us-ascii text), "header" (an
    enclosed message's header, UTF-8) or "part" (a leaf body, decoded as the
    part says).
    """
    part = entry.part
    if entry.epilogue:
        return "ascii", part.epilogue_range
    if part.message is not None:
        return "header", part.header_range
    if part.children or part.maintype == "multipart":
        return "ascii", part.preamble_range or (b"", 0, 0)
    return "part", part.body


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
