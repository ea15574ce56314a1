"""variables (RFC 5229) at run time: set, the string test, assignment, modifiers.

The run-time half of variables.py (the interpreter imports only this one for a
cached program). assign() stores into a variable or a namespace (include's
"global"); apply_modifier() applies one of set's modifiers -- also used by
imap4flags' variable targets and extracttext; encode_url() is enotify's
:encodeurl (RFC 5435 4.2), kept here so that variables need not import enotify.
"""

from ..interpreter import HANDLERS, TESTS
from ..match import match


def encode_url(text):
    """:encodeurl (RFC 5435 4.2): percent-encode all but unreserved characters."""
    out = []
    for byte in text.encode("utf-8", "surrogateescape"):
        ch = chr(byte)
        if ch.isascii() and (ch.isalnum() or ch in "-._~"):
            out.append(ch)
        else:
            out.append("%%%02X" % byte)
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
        return value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
    if name == "length":
        return str(len(value))
    if name == "encodeurl":
        return encode_url(value)
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
