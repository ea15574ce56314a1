"""Header lines for the mail mailslot composes: one line per field, never more.

field(name, value) renders "Name: value\\n" folded at whitespace (RFC 5322 2.2.3).
Every value passes through clean() first: CR, LF, NUL and the other control
characters become spaces, so no value -- a subject from a stranger, a reason from
a script, an address -- can end its line and start a header of its own.
unstructured(text) makes RFC 2047 encoded words (UTF-8, base64) of the non-ASCII
words only, as Dovecot does ("Auto: Gone fishing =?utf-8?b?wr0=?="); mailbox(name,
address) renders '"Name" <address>' with the name quoted or encoded.

message_id(hostname, now) and date(now) take the clock from the caller.

Errors: none; every input renders.
"""

import os

# RFC 5322 2.1.1: lines SHOULD stay within 78 characters.
FOLD_AT = 78
# RFC 2047 2: an encoded word is at most 75 characters; 45 bytes of UTF-8 in base64
# (60 characters) plus "=?utf-8?b?" and "?=" stays below.
ENCODED_CHUNK_BYTES = 45
# A References field is bounded: the newest ids are kept (RFC 5322 3.6.4 allows
# trimming; a hostile thread must not make the reply unbounded).
MAX_REFERENCES = 20

MAILER = "mailslot"


def clean(value):
    """value with every control character (CR, LF, NUL, TAB ...) made a space."""
    return "".join(" " if (ord(c) < 0x20 or c == "\x7f") else c for c in str(value))


def unstructured(text):
    """Encode the non-ASCII runs of words as RFC 2047 encoded words."""
    text = clean(text)
    if text.isascii():
        return text
    words = text.split(" ")
    out = []
    run = []
    for word in words:
        if word.isascii():
            if run:
                out.append(_encode_words(" ".join(run)))
                run = []
            out.append(word)
        else:
            run.append(word)
    if run:
        out.append(_encode_words(" ".join(run)))
    return " ".join(out)


def _encode_words(text):
    import base64
    pieces = []
    current = b""
    for ch in text:
        b = ch.encode("utf-8", "replace")
        if len(current) + len(b) > ENCODED_CHUNK_BYTES:
            pieces.append(current)
            current = b""
        current += b
    if current:
        pieces.append(current)
    return " ".join("=?utf-8?b?%s?=" % base64.b64encode(p).decode("ascii")
                    for p in pieces)


def quote_phrase(name):
    """A display name: as it is when it is atoms, quoted when it has spaces or
    specials (RFC 5322 3.2.3), encoded words when it is not ASCII."""
    name = clean(name).strip()
    if not name.isascii():
        return unstructured(name)
    if all(c.isalnum() or c in "!#$%&'*+-/=?^_`{|}~" for c in name):
        return name
    return '"%s"' % name.replace("\\", "\\\\").replace('"', '\\"')


def mailbox(name, address):
    """'"Name" <address>' or '<address>'."""
    address = clean(address).strip()
    if name and clean(name).strip():
        return "%s <%s>" % (quote_phrase(name), address)
    return "<%s>" % address


def field(name, value):
    """One header field as bytes, folded at whitespace; value cleaned first."""
    text = "%s: %s" % (name, clean(value))
    if len(text) <= FOLD_AT:
        return (text + "\n").encode("utf-8")
    lines = []
    current = ""
    for word in text.split(" "):
        if current and len(current) + 1 + len(word) > FOLD_AT:
            lines.append(current)
            current = " " + word     # the space itself folds (RFC 5322 2.2.3)
        else:
            current = word if not current else current + " " + word
    lines.append(current)
    return ("\n".join(lines) + "\n").encode("utf-8")


def message_id(hostname, now):
    """A fresh Message-ID: time, pid and random bits at our host name."""
    return "<mailslot-%d-%d-%s@%s>" % (int(now), os.getpid(), os.urandom(6).hex(),
                                       clean(hostname).replace(" ", "") or "localhost")


def date(now):
    """RFC 5322 date-time of now, in the local time zone."""
    from email.utils import formatdate
    return formatdate(now, localtime=True)


def references(original_references, message_id_value):
    """The reply's References: the original's, then its Message-ID, bounded."""
    ids = clean(original_references or "").split()
    if message_id_value:
        ids.append(clean(message_id_value).strip())
    ids = [i for i in ids if i.startswith("<") and i.endswith(">")]
    return " ".join(ids[-MAX_REFERENCES:])


def x_sieve():
    from .. import __version__
    return field("X-Sieve", f"{MAILER} {__version__}")
