"""Mail addresses for Sieve: RFC 5322 address lists and single Sieve addresses.

header_addresses(value) parses an address header body (RFC 5322 3.4, with the
obsolete forms Dovecot accepts) into the items the address test matches: Address
(localpart, domain) for each valid mailbox, or the whole value as a str when the
value is empty or holds no valid mailbox at all (RFC 5228 2.7.4; Pigeonhole
matches such a value only with :all).

parse_sieve_address(text) parses the one address a redirect, vacation :from or
notify takes (`addr-spec` or `phrase <addr-spec>`), raising AddressError with
Pigeonhole's wording ("invalid or lonely local part ..."). parse_path() parses an
SMTP path as the envelope gives it ("<a@b>", "<>", "a@b").

smtp_encode(local, domain) renders an address the way Dovecot's
smtp_address_encode does: the local part quoted when it is not a dot-atom.

Errors: AddressError for an invalid single address; header parsing never fails.
Security: the input is untrusted; every loop advances and nothing recurses.
"""

from ..errors import SieveError

ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                  "0123456789!#$%&'*+-/=?^_`{|}~")
_LWSP = " \t\r\n"


class AddressError(SieveError, ValueError):
    """A single address (redirect target, vacation :from ...) is invalid."""


class Address:
    __slots__ = ("localpart", "domain", "name")

    def __init__(self, localpart, domain, name=None):
        self.localpart = localpart
        self.domain = domain
        self.name = name

    def encode(self):
        return smtp_encode(self.localpart, self.domain)

    def __repr__(self):
        return f"Address({self.localpart!r}, {self.domain!r})"


def _is_atext(ch):
    return ch in ATEXT or ord(ch) >= 0x80


def is_dot_atom(text):
    if not text or text[0] == "." or text[-1] == "." or ".." in text:
        return False
    return all(c == "." or _is_atext(c) for c in text)


def smtp_encode(localpart, domain):
    """Encode an address as Dovecot's smtp_address_encode()."""
    if localpart is None:
        return ""
    if is_dot_atom(localpart):
        local = localpart
    else:
        local = '"' + localpart.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if domain is None:
        return local
    return f"{local}@{domain}"


class _Parser:
    """RFC 822 lexical primitives over a str (Dovecot's rfc822-parser)."""

    __slots__ = ("s", "i", "n")

    def __init__(self, text):
        self.s = text
        self.i = 0
        self.n = len(text)

    def cur(self):
        return self.s[self.i] if self.i < self.n else ""

    def skip_comment(self):
        # At '('; returns False when it does not end.
        depth = 0
        s, n = self.s, self.n
        while self.i < n:
            ch = s[self.i]
            if ch == "\\":
                self.i += 2
                continue
            if ch == "(":
                depth += 1
            elif ch == ")":
                depth -= 1
                if depth == 0:
                    self.i += 1
                    return True
            self.i += 1
        return False

    def skip_lwsp(self):
        """Skip whitespace and comments: -1 bad comment, 0 at end, 1 more data."""
        s, n = self.s, self.n
        while self.i < n:
            ch = s[self.i]
            if ch in _LWSP:
                self.i += 1
            elif ch == "(":
                if not self.skip_comment():
                    return -1
            else:
                break
        return 1 if self.i < n else 0

    def atom(self, out):
        s, n = self.s, self.n
        start = self.i
        while self.i < n and _is_atext(s[self.i]):
            self.i += 1
        if self.i == start:
            return -1
        out.append(s[start:self.i])
        return self.skip_lwsp()

    def quoted(self, out):
        # At '"'.
        s, n = self.s, self.n
        self.i += 1
        buf = []
        while self.i < n:
            ch = s[self.i]
            if ch == '"':
                self.i += 1
                out.append("".join(buf))
                return self.skip_lwsp()
            if ch == "\\":
                self.i += 1
                if self.i >= n:
                    break
                ch = s[self.i]
            elif ch in "\r\n":
                self.i += 1
                continue
            buf.append(ch)
            self.i += 1
        return -1

    def dot_atom(self, out):
        """dot-atom, tolerating obsolete whitespace around dots."""
        ret = self.atom(out)
        while ret > 0 and self.cur() == ".":
            out.append(".")
            self.i += 1
            ret = self.skip_lwsp()
            if ret <= 0:
                return -1
            ret = self.atom(out)
        return ret

    def phrase(self, out):
        """phrase = 1*word (obsolete: dots allowed); returns like atom()."""
        words = 0
        ret = 1
        while self.i < self.n:
            ch = self.s[self.i]
            if ch == '"':
                part = []
                ret = self.quoted(part)
                if words:
                    out.append(" ")
                out.extend(part)
            elif _is_atext(ch) or ch == ".":
                if ch == ".":
                    out.append(".")
                    self.i += 1
                    ret = self.skip_lwsp()
                else:
                    part = []
                    ret = self.atom(part)
                    if words:
                        out.append(" ")
                    out.extend(part)
            else:
                break
            words += 1
            if ret <= 0:
                break
        if words == 0:
            return -1
        return ret

    def domain(self, out):
        """domain = dot-atom / domain-literal."""
        if self.cur() == "[":
            start = self.i
            self.i += 1
            while self.i < self.n and self.s[self.i] != "]":
                if self.s[self.i] == "\\":
                    self.i += 1
                elif self.s[self.i] == "[":
                    return -1
                self.i += 1
            if self.i >= self.n:
                return -1
            self.i += 1
            out.append(self.s[start:self.i])
            return self.skip_lwsp()
        return self.dot_atom(out)


# -- single Sieve addresses ---------------------------------------------------------

def _parse_local_part(p):
    if p.i >= p.n:
        raise AddressError("empty local part")
    out = []
    if p.cur() == '"':
        ret = p.quoted(out)
    else:
        ret = -1
        while True:
            while p.cur() == ".":
                out.append(".")
                p.i += 1
                if p.i >= p.n:
                    local = "".join(out)
                    return 0, local
                ret = 1
            if p.cur() == "@":
                break
            ret = p.atom(out)
            if not (ret > 0 and p.cur() == "."):
                break
    local = "".join(out)
    if ret < 0 or any(ord(c) < 0x20 or ord(c) > 0x7E for c in local):
        raise AddressError("invalid local part")
    return ret, local


def _parse_addr_spec(p):
    ret, local = _parse_local_part(p)
    if ret > 0 and p.cur() == "@":
        p.i += 1
        if p.skip_lwsp() <= 0:
            raise AddressError("invalid or missing domain")
        out = []
        if p.domain(out) < 0:
            raise AddressError("invalid or missing domain")
        return local, "".join(out)
    from .diagnostics import sanitize
    raise AddressError("invalid or lonely local part '%s' (expecting '@')"
                       % sanitize(local, 80))


def parse_sieve_address(text):
    """Parse a Sieve address; return (localpart, lower-cased domain)."""
    p = _Parser(text)
    p.skip_lwsp()
    if p.i >= p.n:
        raise AddressError("empty address")
    start = p.i
    name = []
    if p.phrase(name) > 0 and p.cur() == "<":
        p.i += 1
        ret = p.skip_lwsp()
        if ret <= 0:
            if ret < 0:
                raise AddressError("invalid characters after <")
            raise AddressError("empty address")
        local, domain = _parse_addr_spec(p)
        if p.cur() != ">":
            raise AddressError("missing '>'")
        p.i += 1
        if p.skip_lwsp() < 0:
            raise AddressError("address ends with invalid characters")
    else:
        p.i = start
        local, domain = _parse_addr_spec(p)
    if p.i < p.n:
        if p.cur() == ",":
            raise AddressError("not a single address (found ',')")
        raise AddressError("address ends in invalid characters")
    if not domain:
        raise AddressError("missing domain")
    if not local:
        raise AddressError("missing local part")
    return local, domain.lower()


def parse_path(text):
    """Parse an envelope path: '<>' / '' give None; '<a@b>' or 'a@b' an Address.

    A path without a domain keeps its local part (Dovecot allows it for the
    recipient with ALLOW_LOCALPART); unparsable text raises AddressError.
    """
    t = text.strip()
    if t.startswith("<") and t.endswith(">"):
        t = t[1:-1].strip()
        # Drop an obsolete source route (<@a,@b:user@host>).
        if t.startswith("@") and ":" in t:
            t = t.split(":", 1)[1]
    if t == "":
        return None
    at = t.rfind("@")
    if at < 0:
        local = _unquote_local(t)
        return Address(local, None)
    local, domain = t[:at], t[at + 1:]
    if not local or not domain:
        raise AddressError("invalid address")
    return Address(_unquote_local(local), domain)


def _unquote_local(local):
    if len(local) >= 2 and local[0] == '"' and local[-1] == '"':
        out = []
        i = 1
        while i < len(local) - 1:
            ch = local[i]
            if ch == "\\" and i + 1 < len(local) - 1:
                i += 1
                ch = local[i]
            out.append(ch)
            i += 1
        return "".join(out)
    return local


# -- address lists in headers ---------------------------------------------------------

def _parse_mailbox(p):
    """Parse one mailbox at p; return Address or None (invalid), always advancing."""
    start = p.i
    name = []
    ret = p.phrase(name)
    if ret > 0 and p.cur() == "<" or (ret < 0 and p.cur() == "<"):
        if ret < 0:
            name = []
        return _parse_angle_addr(p, " ".join(name) if name else None)
    p.i = start
    return _parse_plain_addr_spec(p)


def _parse_angle_addr(p, name):
    p.i += 1  # '<'
    if p.skip_lwsp() <= 0:
        return None
    if p.cur() == "@":
        # Obsolete route: skip to ':'.
        colon = p.s.find(":", p.i)
        close = p.s.find(">", p.i)
        if colon < 0 or (0 <= close < colon):
            return None
        p.i = colon + 1
        p.skip_lwsp()
    if p.cur() == ">":
        p.i += 1
        p.skip_lwsp()
        return Address("", None, name)   # <> : no address
    addr = _parse_plain_addr_spec(p)
    if p.cur() != ">":
        return None
    p.i += 1
    p.skip_lwsp()
    if addr is not None:
        addr.name = name
    return addr


def _parse_plain_addr_spec(p):
    local = []
    if p.cur() == '"':
        if p.quoted(local) < 0:
            return None
    else:
        ret = p.atom(local)
        if ret < 0 and p.cur() != ".":
            return None
    while p.cur() == ".":
        local.append(".")
        p.i += 1
        p.skip_lwsp()
        if p.cur() == '"':
            if p.quoted(local) < 0:
                return None
        elif p.atom(local) < 0:
            break
    localpart = "".join(local)
    if p.cur() != "@":
        return Address(localpart, None)
    p.i += 1
    if p.skip_lwsp() <= 0:
        return Address(localpart, None)
    domain = []
    if p.domain(domain) < 0:
        return Address(localpart, None)
    return Address(localpart, "".join(domain))


MAX_ADDRESSES = 256


def _skip_to_next(p):
    """After a syntax error: skip to the next top-level ',' (or the end)."""
    depth = 0
    s = p.s
    while p.i < p.n:
        ch = s[p.i]
        if ch == '"':
            p.quoted([])
            continue
        if ch == "(":
            if not p.skip_comment():
                p.i = p.n
            continue
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == "," and depth == 0:
            return
        p.i += 1


def parse_address_list(value):
    """Parse an address-list; return [(Address or None(invalid/group), raw)]."""
    p = _Parser(value)
    items = []
    p.skip_lwsp()
    while p.i < p.n and len(items) < MAX_ADDRESSES:
        if p.cur() == ",":
            p.i += 1
            p.skip_lwsp()
            continue
        start = p.i
        # A group: phrase ':' [mailbox-list] ';'
        name = []
        if p.phrase(name) >= 0 and p.cur() == ":":
            p.i += 1
            p.skip_lwsp()
            items.append(None)   # group start: not an address
            while p.i < p.n and p.cur() != ";":
                if p.cur() == ",":
                    p.i += 1
                    p.skip_lwsp()
                    continue
                before = p.i
                addr = _parse_mailbox(p)
                if addr is None or p.i == before or (p.cur() not in (",", ";", "")):
                    items.append(None)
                    if p.i == before:
                        p.i += 1
                    _skip_to_next_in_group(p)
                else:
                    items.append(addr)
            if p.cur() == ";":
                p.i += 1
            p.skip_lwsp()
            items.append(None)   # group end
            continue
        p.i = start
        addr = _parse_mailbox(p)
        if addr is None or p.i == start or (p.i < p.n and p.cur() != ","):
            items.append(None)
            if p.i == start:
                p.i += 1
            _skip_to_next(p)
        else:
            items.append(addr)
    return items


def _skip_to_next_in_group(p):
    while p.i < p.n and p.cur() not in ",;":
        if p.cur() == '"':
            p.quoted([])
            continue
        p.i += 1


def header_addresses(value):
    """The address test's view of one header value (see module docstring)."""
    if value == "":
        return [""]
    items = parse_address_list(value)
    # 8-bit in the addr-spec makes it invalid, as in Pigeonhole 0.5.19 (no
    # RFC 6532 internationalised addresses); a display name may have it.
    valid = [a for a in items
             if a is not None and a.domain is not None and a.localpart != ""
             and a.localpart.isascii() and a.domain.isascii()]
    if valid:
        return valid
    if items:
        return [value]
    return []
