"""The Sieve lexer: turns script text into tokens (RFC 5228 section 8.1).

Lexer(text, diag, name) is pulled by the parser one token at a time (advance());
the current token is in .type, .value and .line. Whitespace and comments are
skipped. Strings come out with escapes resolved, loose LF made CRLF (as Pigeonhole
does) and multi-line "text:" strings dot-unstuffed; numbers have their K/M/G
quantifier applied.

Errors: lexical errors are reported to diag with Pigeonhole's wording and the
token becomes ERROR (the parser then stays silent about it, as Pigeonhole's does);
a run of unexpected characters becomes one GARBAGE token.

Security: the input is an untrusted user script. Every loop advances; strings and
identifiers are bounded (MAX_STRING_LEN, MAX_IDENTIFIER_LEN); nothing is evaluated.
"""

from .diagnostics import sanitize  # noqa: F401 (used and re-exported)
from .limits import MAX_IDENTIFIER_LEN, MAX_NUMBER, MAX_STRING_LEN

# Token types. Ints, compared often.
EOF, NUMBER, IDENTIFIER, TAG, STRING = 1, 2, 3, 4, 5
RBRACKET, LBRACKET, RCURLY, LCURLY, RSQUARE, LSQUARE = 6, 7, 8, 9, 10, 11
SEMICOLON, COMMA, SLASH, COLON, GARBAGE, ERROR = 12, 13, 14, 15, 16, 17

DESCRIPTIONS = {
    EOF: "end of file", NUMBER: "number", IDENTIFIER: "identifier", TAG: "tag",
    STRING: "string", RBRACKET: "')'", LBRACKET: "'('", RCURLY: "'}'",
    LCURLY: "'{'", RSQUARE: "']'", LSQUARE: "'['", SEMICOLON: "';'",
    COMMA: "','", SLASH: "'/'", COLON: "':'", GARBAGE: "unknown characters",
    ERROR: "error token (bug)",
}

_SINGLE = {"]": RSQUARE, "[": LSQUARE, "}": RCURLY, "{": LCURLY, ")": RBRACKET,
           "(": LBRACKET, ";": SEMICOLON, ",": COMMA}
_ALPHA = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_DIGIT = frozenset("0123456789")
_ALNUM = _ALPHA | _DIGIT
_WSP = frozenset(" \t\r\n")
_QUANTIFIER = {"k": 10, "K": 10, "m": 20, "M": 20, "g": 30, "G": 30}


def sanitize_char(ch):
    """Render one character as Pigeonhole does in messages: 'c', or 0xNN for its
    first byte (Pigeonhole's lexer reads bytes)."""
    code = ord(ch)
    if 31 < code < 127:
        return f"'{ch}'"
    return "0x%02x" % ch.encode("utf-8", "surrogateescape")[0]


class Lexer:
    """Pull-lexer over a script's text."""

    __slots__ = ("text", "pos", "end", "line", "diag", "name",
                 "type", "value", "token_line")

    def __init__(self, text, diag, name):
        self.text = text
        self.pos = 0
        self.end = len(text)
        self.line = 1
        self.diag = diag
        self.name = name
        self.type = None
        self.value = None
        self.token_line = 1

    def description(self):
        return DESCRIPTIONS.get(self.type, "unknown token (bug)")

    def _error(self, msg):
        self.diag.error(f"{self.name}: line {self.line}", msg)

    def _fail(self, msg, pos=None):
        """Report msg (at pos, when given), make the token an ERROR; returns False."""
        if pos is not None:
            self.pos = pos
        self._error(msg)
        self.type = ERROR
        return False

    def _warning(self, msg):
        self.diag.warning(f"{self.name}: line {self.line}", msg)

    def advance(self):
        """Scan the next token that is not whitespace or a comment."""
        while True:
            if not self._scan():
                return
            if self.type is not None:
                return

    # One raw token; returns False on error (type set to ERROR/GARBAGE), True
    # otherwise. type None means whitespace/comment (skip).
    def _scan(self):
        text, pos, end = self.text, self.pos, self.end
        self.token_line = self.line
        if pos >= end:
            self.type = EOF
            return True
        ch = text[pos]
        if ch in _WSP:
            while pos < end and text[pos] in _WSP:
                if text[pos] == "\n":
                    self.line += 1
                pos += 1
            self.pos = pos
            self.type = None
            return True
        if ch == "#":
            return self._hash_comment(pos + 1)
        if ch == "/":
            if pos + 1 < end and text[pos + 1] == "*":
                return self._bracket_comment(pos + 2)
            self.pos = pos + 1
            self.type = SLASH
            return True
        if ch == '"':
            return self._quoted(pos + 1)
        single = _SINGLE.get(ch)
        if single is not None:
            self.pos = pos + 1
            self.type = single
            return True
        if ch in _DIGIT:
            return self._number(pos)
        if ch in _ALPHA or ch == ":":
            return self._identifier(pos)
        # Garbage: report once for a run of it.
        if self.type != GARBAGE:
            self._error("unexpected character(s) starting with %s" % sanitize_char(ch))
        if ch == "\n":
            self.line += 1
        self.pos = pos + 1
        self.type = GARBAGE
        return False

    def _hash_comment(self, pos):
        text, end = self.text, self.end
        nl = text.find("\n", pos)
        stop = end if nl < 0 else nl
        nul = text.find("\0", pos, stop)
        if nul >= 0:
            return self._fail("encountered NUL character in hash comment", pos=nul)
        if nl < 0:
            self.pos = end
            self._warning("no newline (CRLF) at end of hash comment at end of file")
            self.type = None
            return True
        self.pos = nl + 1
        self.line += 1
        self.type = None
        return True

    def _bracket_comment(self, pos):
        text = self.text
        close = text.find("*/", pos)
        stop = self.end if close < 0 else close
        nul = text.find("\0", pos, stop)
        if nul >= 0:
            self.line += text.count("\n", pos, nul)
            return self._fail("encountered NUL character in bracket comment", pos=nul)
        if close < 0:
            self.line += text.count("\n", pos, self.end)
            return self._fail("end of file before end of bracket comment ('/* ... */') "
                              "started at line %d" % self.token_line, pos=self.end)
        self.line += text.count("\n", pos, close)
        self.pos = close + 2
        self.type = None
        return True

    def _quoted(self, pos):
        text, end = self.text, self.end
        start_line = self.token_line
        parts = []
        size = 0
        while True:
            # Copy the plain run up to the next special character at once.
            j = pos
            while j < end and text[j] not in '"\\\r\n\0':
                j += 1
            if j > pos:
                if size <= MAX_STRING_LEN:
                    parts.append(text[pos:j])
                size += j - pos
                pos = j
            if pos >= end:
                return self._fail("end of file before end of quoted string "
                                  "started at line %d" % start_line, pos=end)
            ch = text[pos]
            if ch == '"':
                pos += 1
                break
            if ch == "\\":
                pos += 1
                if pos >= end:
                    return self._fail("end of file before end of quoted string "
                                      "started at line %d" % start_line, pos=end)
                ch = text[pos]
            if ch == "\0":
                return self._fail("encountered NUL character in quoted string "
                                  "started at line %d" % start_line, pos=pos)
            if ch == "\r":
                if pos + 1 >= end or text[pos + 1] != "\n":
                    return self._fail("found stray carriage-return (CR) character in "
                                      "quoted string started at line %d" % start_line,
                                      pos=pos + 1)
                pos += 1
                ch = "\n"
            if ch == "\n":
                self.line += 1
                if size <= MAX_STRING_LEN:
                    parts.append("\r\n")
                size += 2
            else:
                if size <= MAX_STRING_LEN:
                    parts.append(ch)
                size += 1
            pos += 1
        self.pos = pos
        if size > MAX_STRING_LEN:
            return self._fail("quoted string started at line %d is too long "
                              "(longer than %d bytes)" % (start_line, MAX_STRING_LEN))
        self.type = STRING
        self.value = "".join(parts)
        return True

    def _number(self, pos):
        text, end = self.text, self.end
        j = pos
        while j < end and text[j] in _DIGIT:
            j += 1
        value = int(text[pos:j])
        overflow = value > MAX_NUMBER
        if not overflow and j < end and text[j] in _QUANTIFIER:
            shift = _QUANTIFIER[text[j]]
            j += 1
            if value > (MAX_NUMBER >> shift):
                overflow = True
            else:
                value <<= shift
        self.pos = j
        if overflow:
            return self._fail("number exceeds integer limits (max %d)" % MAX_NUMBER)
        self.type = NUMBER
        self.value = value
        return True

    def _identifier(self, pos):
        text, end = self.text, self.end
        kind = IDENTIFIER
        if text[pos] == ":":
            pos += 1
            if pos >= end or text[pos] not in _ALPHA:
                self.pos = pos
                self.type = COLON
                return True
            kind = TAG
        j = pos + 1
        while j < end and text[j] in _ALNUM:
            j += 1
        ident = text[pos:j]
        self.pos = j
        if (kind == IDENTIFIER and j < end and text[j] == ":"
                and len(ident) == 4 and ident.lower() == "text"):
            return self._multiline(j + 1)
        if len(ident) > MAX_IDENTIFIER_LEN:
            what = "tag identifier ':" if kind == TAG else "identifier '"
            return self._fail("encountered impossibly long %s%s'"
                              % (what, sanitize(ident[:MAX_IDENTIFIER_LEN + 1],
                                                MAX_IDENTIFIER_LEN)))
        self.type = kind
        self.value = ident
        return True

    def _multiline(self, pos):
        text, end = self.text, self.end
        start_line = self.token_line
        while pos < end and text[pos] in " \t":
            pos += 1
        if pos < end and text[pos] == "\r":
            pos += 1
        if pos >= end:
            return self._fail("end of file before end of multi-line string", pos=end)
        ch = text[pos]
        if ch == "#":
            nl = text.find("\n", pos)
            if nl < 0:
                return self._fail("end of file before end of multi-line string", pos=end)
            nul = text.find("\0", pos, nl)
            if nul >= 0:
                return self._fail("encountered NUL character in hash comment", pos=nul)
            pos = nl + 1
            self.line += 1
        elif ch == "\n":
            pos += 1
            self.line += 1
        else:
            return self._fail("invalid character %s after 'text:' in multiline string"
                              % sanitize_char(ch), pos=pos)
        lines = []
        size = 0
        while True:
            # A line is everything up to LF (an optional CR before it is dropped).
            nl = text.find("\n", pos)
            if nl < 0:
                rest = text[pos:]
                self.pos = end
                if "\0" in rest:
                    self._error("encountered NUL character in quoted string "
                                "started at line %d" % start_line)
                elif "\r" in rest:
                    self._error("found stray carriage-return (CR) character "
                                "in multi-line string started at line %d" % start_line)
                else:
                    self._error("end of file before end of multi-line string")
                self.type = ERROR
                return False
            line = text[pos:nl]
            if line.endswith("\r"):
                line = line[:-1]
            if "\r" in line or "\0" in line:
                bad = min(i for i in (line.find("\r"), line.find("\0")) if i >= 0)
                self.pos = pos + bad
                if line[bad] == "\0":
                    self._error("encountered NUL character in quoted string "
                                "started at line %d" % start_line)
                else:
                    self._error("found stray carriage-return (CR) character "
                                "in multi-line string started at line %d" % start_line)
                self.type = ERROR
                return False
            pos = nl + 1
            self.line += 1
            if line == ".":
                break
            if line.startswith(".."):
                line = line[1:]
            if size <= MAX_STRING_LEN:
                lines.append(line)
            size += len(line) + 2
        self.pos = pos
        if size > MAX_STRING_LEN:
            return self._fail("multi-line string started at line %d is too long "
                              "(longer than %d bytes)" % (start_line, MAX_STRING_LEN))
        self.type = STRING
        self.value = "".join(line + "\r\n" for line in lines)
        return True
