"""imap4flags' run-time half: flag lists and the handlers (see imap4flags.py).

Kept apart from the commands' definitions so that running a cached program does
not import the compiler; imap4flags.py imports the flag helpers from here.
Flags are untrusted text: invalid ones are skipped, never stored.
"""

from ..interpreter import HANDLERS, TESTS
from ..match import match
from ..result import FlagsEffect

_SYSTEM = ("\\answered", "\\flagged", "\\deleted", "\\seen", "\\draft")
# RFC 3501 ATOM-CHAR: any CHAR except atom-specials.
_ATOM_SPECIALS = frozenset('(){ %*"\\]')


def flag_is_valid(flag):
    if not flag:
        return False
    if flag[0] == "\\":
        return flag.lower() in _SYSTEM
    return all(32 < ord(c) < 127 and c not in _ATOM_SPECIALS for c in flag)


def split_flags(text):
    return [f for f in text.split(" ") if f]


def add_flags(current, text):
    """Add the valid flags of text to the list current (in place)."""
    lowered = {f.lower() for f in current}
    for flag in split_flags(text):
        if flag_is_valid(flag) and flag.lower() not in lowered:
            current.append(flag)
            lowered.add(flag.lower())


def remove_flags(current, text):
    drop = {f.lower() for f in split_flags(text)}
    current[:] = [f for f in current if f.lower() not in drop]


def flags_from_list(items):
    """A :flags list (strings of space-separated flags) to a normalised list."""
    out = []
    for item in items:
        add_flags(out, item)
    return out


# -- run time ---------------------------------------------------------------------

def _flag_list(it, target):
    """The list object a flag command changes (internal or a variable's)."""
    if target is None:
        return it.result.internal_flags, None
    current = split_flags(_read_var(it, target))
    return current, target


def _read_var(it, target):
    if target[0] == "v":
        return it.variables.get(target[1], "")
    return it.ctx.namespace_get(it, target[1], target[2])


def _store(it, target, flags):
    if target is not None:
        from .variables_runtime import assign
        assign(it, target, " ".join(flags))


def run_setflag(it, op):
    flags, target = _flag_list(it, op[2])
    del flags[:]
    for item in it.expand_list(op[3]):
        add_flags(flags, item)
    _store(it, target, flags)


def run_addflag(it, op):
    flags, target = _flag_list(it, op[2])
    for item in it.expand_list(op[3]):
        add_flags(flags, item)
    _store(it, target, flags)


def run_removeflag(it, op):
    flags, target = _flag_list(it, op[2])
    for item in it.expand_list(op[3]):
        remove_flags(flags, item)
    _store(it, target, flags)


def test_hasflag(it, op):
    variables, keys, spec = op[2], op[3], op[4]
    if variables is None:
        values = list(it.result.internal_flags)
    else:
        values = []
        for target in variables:
            values.extend(flags_from_list([_read_var(it, target)]))
    keys = it.expand_list(keys)
    if spec[0] in ("is", "contains"):
        split = []
        for k in keys:
            split.extend(flags_from_list([k]))
        keys = split
    return match(it, spec, values, keys)


def implicit_keep_effect():
    return FlagsEffect(None)


HANDLERS.update({"setflag": run_setflag, "addflag": run_addflag,
                 "removeflag": run_removeflag})
TESTS["hasflag"] = test_hasflag
