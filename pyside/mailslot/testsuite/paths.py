"""SMTP paths as Pigeonhole's testsuite reads test_set's envelope values.

parse_envelope_path(text, allow_localpart, allow_empty) follows the rules of
Dovecot's smtp_address_parse_path with the flags the testsuite passes: brackets
optional but matched, a source route only inside them (and ignored), a
dot-string local part (Dovecot tolerates stray dots, as Japanese mobile
addresses have them) or a quoted string, "@" and a domain unless the value may
be a bare local part. tests/extensions/envelope.svtest checks these rules.

Errors: AddressError (the caller logs it and leaves the envelope part unset).
"""

from ..sieve.address import AddressError

_ATEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
                   "!#$%&'*+-/=?^_`{|}~")
_LABEL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")


def _domain_end(text, i):
    """End of an RFC 5321 domain at text[i:] (labels of letters, digits, "-",
    and "_" as Dovecot allows; or an address literal), or -1."""
    if text[i:i + 1] == "[":
        j = text.find("]", i)
        return -1 if j < 0 else j + 1
    start = i
    while True:
        j = i
        while j < len(text) and text[j] in _LABEL:
            j += 1
        if j == i:
            return -1
        if j < len(text) and text[j] == "." and j + 1 < len(text) and \
                text[j + 1] in _LABEL:
            i = j + 1
            continue
        return j if j > start else -1


def parse_envelope_path(text, allow_localpart=False, allow_empty=False):
    """An SMTP path the way Dovecot's smtp_address_parse_path reads test_set's
    envelope values: brackets optional but matched, a source route only inside
    them (and ignored), a dot-string local part (Dovecot tolerates stray dots)
    or a quoted string, "@" and a domain unless allow_localpart. <> (or "") is
    None when allow_empty. Raises AddressError."""
    from ..sieve.address import Address
    t = text
    bracketed = t.startswith("<")
    if bracketed:
        if not t.endswith(">") or len(t) < 2:
            raise AddressError("missing '>'")
        t = t[1:-1]
        if t.startswith("@"):
            i = 0
            while t[i:i + 1] == "@":
                end = _domain_end(t, i + 1)
                if end < 0:
                    raise AddressError("invalid source route")
                i = end
                if t[i:i + 1] == ",":
                    i += 1
                    continue
                break
            if t[i:i + 1] != ":":
                raise AddressError("invalid source route")
            t = t[i + 1:]
    elif t.endswith(">"):
        raise AddressError("spurious '>'")
    if t == "":
        if allow_empty:
            return None
        raise AddressError("empty path")
    if t.startswith('"'):
        j = 1
        while j < len(t) and t[j] != '"':
            j += 2 if t[j] == "\\" else 1
        if j >= len(t):
            raise AddressError("unterminated quoted string")
        local, rest = t[1:j], t[j + 1:]
        import re   # test-only tool: never on the delivery path
        local = re.sub(r"\\(.)", r"\1", local)
    else:
        j = 0
        while j < len(t) and (t[j] in _ATEXT or t[j] == "."):
            j += 1
        local, rest = t[:j], t[j:]
        if not local:
            raise AddressError("invalid local part")
    if rest == "":
        if allow_localpart:
            return Address(local, None)
        raise AddressError("missing domain")
    if rest[0] != "@" or _domain_end(rest, 1) != len(rest):
        raise AddressError("invalid domain")
    return Address(local, rest[1:])
