"""The postmaster_address setting read as dovecot-lda reads it: one mailbox.

    name, address = postmaster(settings, hostname)   # raises InvalidPostmaster

The setting (already expanded for the recipient: postmaster@%d, ...) is one
RFC 5322 mailbox: "addr@domain", "Name <addr@domain>" or "addr@domain (Name)".
The name, when there is one, is the display name of the From of rejections,
DSNs and notifications (else "Postmaster"); the address is the From address and
the envelope sender where a setting says "postmaster". An empty setting means
postmaster@<hostname>.

Dovecot 2.3's dovecot-lda (Pigeonhole 0.5) refuses the setting when it is not one
mailbox with a local part and a domain, and these rules are the ones observed
from it (tests/send/cases):
- no "@", an empty local part or domain ("postmaster@" from postmaster@%d for a
  user without a domain), a domain ending in ".", a group ("team: a@b;"), an
  empty address ("Name <>") or words before an address without <> ("a b@c"):
  invalid;
- a second mailbox after a comma: invalid ("more than one address");
- anything else after the first mailbox is ignored ("pm@exa mple.org" is
  pm@exa, as Dovecot reads it);
- a local part of atoms with any dots ("a..b") or a quoted string, and a domain
  literal ("[192.0.2.1]"), are accepted.

What an invalid value means is the caller's: a Sieve run does not start (the
message is kept, sieve_filing.py), a DSN is not sent (a temporary failure,
outgoing.py).

Errors: InvalidPostmaster (a ValueError) with the reason.

Security: the value is the administrator's setting expanded with the
recipient's name and domain; the parts returned are rendered through
send/headers.py (no line breaks) and checked by the transport before they reach
an argv or SMTP command.
"""

# RFC 5322 3.2.3: the characters of an atom besides letters and digits; bytes
# above ASCII are taken as atom text too (Dovecot accepts a UTF-8 display name).
_ATEXT_SPECIALS = frozenset("!#$%&'*+-/=?^_`{|}~")
# Bounded work: a setting longer than this is refused (RFC 5321 4.5.3.1.3 puts a
# path at 256 octets; a display name adds a little).
MAX_SETTING = 1024


class InvalidPostmaster(ValueError):
    """postmaster_address is not one usable mailbox."""


def postmaster(settings, hostname):
    """(display name or "", address) of the recipient's postmaster_address."""
    text = settings.get("postmaster_address") or ""
    if not text.strip():
        return "", "postmaster@" + hostname
    return parse(text)


def parse(text):
    """(display name or "", address) of one mailbox, or InvalidPostmaster."""
    if len(text) > MAX_SETTING:
        raise InvalidPostmaster(f"invalid postmaster_address (longer than "
                                f"{MAX_SETTING} characters)")
    p = _Parser(text)
    result = p.mailbox()
    if result is None:
        raise InvalidPostmaster(f"invalid postmaster_address {text!r}: not an address "
                                "with a local part and a domain")
    p.cfws()
    if p.peek() == ",":
        p.pos += 1
        p.cfws()
        if p.pos < len(text):
            raise InvalidPostmaster(f"invalid postmaster_address {text!r}: more than "
                                    "one address")
    return result


def _atext(c):
    return c.isalnum() or c in _ATEXT_SPECIALS or ord(c) > 0x7f


class _Parser:
    def __init__(self, text):
        self.text, self.pos = text, 0

    def peek(self):
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def cfws(self):
        """Skip white space and comments; return the comments' text."""
        comments = []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            if c in " \t\r\n":
                self.pos += 1
            elif c == "(":
                comments.append(self._comment())
            else:
                break
        return " ".join(c for c in comments if c)

    def _comment(self):
        depth, out = 0, []
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif c == "(":
                depth += 1
                if depth > 1:
                    out.append(c)
            elif c == ")":
                depth -= 1
                if depth == 0:
                    break
                out.append(c)
            else:
                out.append(c)
        return " ".join("".join(out).split())

    def _atoms(self, dots):
        start = self.pos
        while self.pos < len(self.text) and (_atext(self.text[self.pos])
                                             or (dots and self.text[self.pos] == ".")):
            self.pos += 1
        return self.text[start:self.pos]

    def _quoted(self):
        """A quoted string at pos: (its text with the quotes, its content) or None."""
        if self.peek() != '"':
            return None
        start, out = self.pos, []
        self.pos += 1
        while self.pos < len(self.text):
            c = self.text[self.pos]
            self.pos += 1
            if c == "\\" and self.pos < len(self.text):
                out.append(self.text[self.pos])
                self.pos += 1
            elif c == '"':
                return self.text[start:self.pos], "".join(out)
            else:
                out.append(c)
        return None

    def _local_part(self):
        quoted = self._quoted()
        if quoted is not None:
            return quoted[0]
        return self._atoms(dots=True) or None

    def _domain(self):
        if self.peek() == "[":
            end = self.text.find("]", self.pos)
            if end < 0 or "[" in self.text[self.pos + 1:end] or "\\" in \
                    self.text[self.pos:end]:
                return None
            literal = self.text[self.pos:end + 1]
            self.pos = end + 1
            return literal
        domain = self._atoms(dots=True)
        if not domain or "" in domain.split("."):
            return None
        return domain

    def _addr_spec(self):
        local = self._local_part()
        if local is None:
            return None
        self.cfws()
        if self.peek() != "@":
            return None
        self.pos += 1
        self.cfws()
        domain = self._domain()
        return None if domain is None else local + "@" + domain

    def mailbox(self):
        self.cfws()
        start = self.pos
        address = self._addr_spec()
        if address is not None:
            return self.cfws(), address        # addr@domain (Name)
        self.pos = start
        words = []
        while True:
            quoted = self._quoted()
            word = quoted[1] if quoted is not None else self._atoms(dots=True)
            if not word and quoted is None:
                break
            words.append(word)
            self.cfws()
        if self.peek() != "<":
            return None
        self.pos += 1
        self.cfws()
        address = self._addr_spec()
        self.cfws()
        if address is None or self.peek() != ">":
            return None
        self.pos += 1
        return " ".join(words), address
