"""imap4flags (RFC 5232): setflag, addflag, removeflag, hasflag, :flags.

Flags live in an internal variable (or a named variable when the variables
extension is active) as a space-separated list; adding skips invalid flags (a
system flag other than \\Seen \\Answered \\Flagged \\Deleted \\Draft, or a keyword
that is not an IMAP atom) and ones already there (case-insensitively). keep and
fileinto store with the internal flags as they are when the action runs, unless
:flags gives a list; implicit keep uses them as they are at the end.
"""

from .. import syntax as S
from ..diagnostics import sanitize
from ..defs import CommandDef, TagDef
from .core import link_match_tags, match_spec
# The run-time half (registers the handlers); its flag helpers are used here too.
from .imap4flags_runtime import (add_flags, flag_is_valid, flags_from_list,  # noqa: F401
                                 remove_flags, split_flags)

class FlagsTag(TagDef):
    identifier = "flags"
    id_code = 4

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.STRING_LIST):
            return None
        value = v.activate_list(node, param)
        if value is None:
            return None
        node.tags.setdefault("effects", []).append(("flags", value))
        node.tags["explicit_flags"] = True
        return i + 2


class ImplicitFlags(TagDef):
    identifier = "flags"

    def validate_persistent(self, v, node):
        if not node.tags.get("explicit_flags"):
            node.tags.setdefault("effects", []).append(("implicit_flags",))
        return True


IMPLICIT = ImplicitFlags()


def validate_flag_args(v, node, is_test):
    """Pigeonhole's ext_imap4flags_command_validate; returns (var, flags) or None."""
    args = node.positional
    kind = node.kind_name()
    if not args:
        v.error(node.line, "the %s %s expects at least one argument, but none was found"
                % (node.name, kind))
        return None
    arg = args[0]
    if arg.kind not in (S.STRING, S.STRING_LIST):
        v.error(arg.line, "the %s %s expects either a string (variable name) or a "
                "string-list (list of flags) as first argument, but %s was found"
                % (node.name, kind, arg.type_name()))
        return None
    variables = None
    if len(args) > 1:
        arg2 = args[1]
        if arg.kind != S.STRING:
            if is_test:
                if arg.kind != S.STRING_LIST:
                    v.error(arg.line, "if a second argument is specified for the "
                            "hasflag, the first must be a string-list (variable-list), "
                            "but %s was found" % arg.type_name())
                    return None
            else:
                v.error(arg.line, "if a second argument is specified for the %s %s, "
                        "the first must be a string (variable name), but %s was found"
                        % (node.name, kind, arg.type_name()))
                return None
        if v.variables is None:
            v.error(arg.line, "the %s %s only allows for the specification of a "
                    "variable name when the variables extension is active"
                    % (node.name, kind))
            return None
        from .variables import variable_target
        names = []
        for text, line in zip(arg.strings(), arg.string_lines()):
            target = variable_target(v, node, S.Arg(S.STRING, text, line))
            if target is None:
                return None
            names.append(target)
        variables = names
        if arg2.kind not in (S.STRING, S.STRING_LIST):
            v.error(arg2.line, "the %s %s expects a string list (list of flags) as "
                    "second argument when two arguments are specified, but %s was found"
                    % (node.name, kind, arg2.type_name()))
            return None
        if len(args) > 2:
            v.error(node.line, "the %s %s requires %d positional argument(s), but %d "
                    "is/are specified" % (node.name, kind, 2, len(args)))
            return None
    else:
        arg2 = arg
    flags = v.activate_list(node, arg2)
    if flags is None:
        return None
    if not is_test and all(isinstance(f, str) for f in flags):
        for item in flags:
            bad = [f for f in split_flags(item) if not flag_is_valid(f)]
            if bad:
                v.warning(arg.line, "IMAP flag '%s' specified for the %s command is "
                          "invalid and will be ignored (only first invalid is reported)"
                          % (sanitize(bad[0], 64), node.name))
                break
    return variables, flags, arg2


class FlagCommand(CommandDef):
    positional = -1

    def __init__(self, name):
        self.name = name

    def validate(self, v, node):
        res = validate_flag_args(v, node, False)
        if res is None:
            return False
        variables, flags, _ = res
        node.data = (variables[0] if variables else None, flags)
        return True

    def compile(self, c, node):
        return (self.name, node.line, node.data[0], node.data[1])


class HasFlag(CommandDef):
    name = "hasflag"
    is_test = True
    positional = -1

    def registered(self, v, reg):
        link_match_tags(v, reg)

    def validate(self, v, node):
        res = validate_flag_args(v, node, True)
        if res is None:
            return False
        variables, flags, karg = res
        spec = match_spec(v, node, flags, karg)
        if spec is None:
            return False
        node.data = (variables, flags, spec)
        return True

    def compile(self, c, node):
        return ("hasflag", node.line) + node.data


def load(v, name):
    for cmd in ("setflag", "addflag", "removeflag"):
        v.register_command(FlagCommand(cmd), name)
    v.register_command(HasFlag(), name)
    tag = FlagsTag()
    for cmd in ("keep", "fileinto"):
        v.register_external_tag(cmd, tag)
        v.register_persistent_tag(cmd, IMPLICIT)
    return True
