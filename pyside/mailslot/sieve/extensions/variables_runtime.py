"""variables (RFC 5229) at run time: set, the string test, assignment, modifiers.

The run-time half of variables.py (the interpreter imports only this one for a
cached program). assign() stores into a variable or a namespace (include's
"global"); apply_modifier() applies one of set's modifiers -- also used by
imap4flags' variable targets and extracttext; encode_url() is enotify's
:encodeurl (RFC 5435 4.2), kept here so that variables need not import enotify.
"""

from ..interpreter import HANDLERS, TESTS
from ..match import match


def encode_url(text, limit=0):
    """:encodeurl (RFC 5435 4.2): percent-encode all but unreserved characters.

    With a limit (sieve_variables_max_variable_size, in bytes) the result stops
    before the first character whose whole encoding would not fit, as
    Pigeonhole's does: a %XX sequence of one character is never cut.
    """
    out = []
    size = 0
    for ch in text:
        if ch.isascii() and (ch.isalnum() or ch in "-._~"):
            piece = ch
        else:
            piece = "".join("%%%02X" % b for b in ch.encode("utf-8", "surrogateescape"))
        if limit and size + len(piece) > limit:
            break
        out.append(piece)
        size += len(piece)
    return "".join(out)


def quote_wildcard(text, limit=0):
    """:quotewildcard: backslash before * ? and \\; with a limit (bytes) the
    result stops before a character (with its backslash) that would not fit."""
    if not limit:
        return text.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
    out = []
    size = 0
    for ch in text:
        piece = "\\" + ch if ch in "*?\\" else ch
        n = len(piece) if piece.isascii() else len(piece.encode("utf-8", "surrogateescape"))
        if size + n > limit:
            break
        out.append(piece)
        size += n
    return "".join(out)


def apply_modifier(it, name, value):
    if name == "lower":
        return _ascii_lower(value)
    if name == "upper":
        return _ascii_upper(value)
    if name == "lowerfirst":
        return _ascii_lower(value[:1]) + value[1:]
    if name == "upperfirst":
        return _ascii_upper(value[:1]) + value[1:]
    if name == "quotewildcard":
        return quote_wildcard(value, it.max_variable_size)
    if name == "length":
        return str(len(value))
    if name == "encodeurl":
        return encode_url(value, it.max_variable_size)
    return value


_LOWER = {c: c + 32 for c in range(65, 91)}
_UPPER = {c: c - 32 for c in range(97, 123)}


def _ascii_lower(text):
    return text.lower() if text.isascii() else text.translate(_LOWER)


def _ascii_upper(text):
    return text.upper() if text.isascii() else text.translate(_UPPER)


def run_set(it, op):
    target, value, mods = op[2], op[3], op[4]
    text = it.expand(value)
    for mod in mods:
        text = apply_modifier(it, mod, text)
    assign(it, target, text)


def assign(it, target, text):
    if target[0] == "v":
        it.set_variable(target[1], text)
    else:
        it.ctx.namespace_set(it, target[1], target[2], text)


def test_string(it, op):
    source = it.expand_list(op[2])
    keys = it.expand_list(op[3])
    spec = op[4]
    if spec[0] == "count":
        # RFC 5229 5: :count counts the non-empty strings.
        source = [s for s in source if s != ""]
    return match(it, spec, source, keys)


HANDLERS["set"] = run_set
TESTS["string"] = test_string
