"""editheader (RFC 5293): addheader and deleteheader.

addheader [:last] <field-name> <value> adds a field at the top (or the bottom);
deleteheader [:index n [:last]] [COMPARATOR] [MATCH-TYPE] <field-name>
[<value-patterns>] removes fields. Later tests and the stored copy see the
edited header. Received and Auto-Submitted cannot be deleted, and the
sieve_editheader_protected / _forbid_add / _forbid_delete settings add more.
Not enabled by default (as in Pigeonhole).
"""

from .. import syntax as S
from ..interpreter import HANDLERS
from ..diagnostics import sanitize
from ..match import match
from ..defs import CommandDef, TagDef
from .core import link_match_tags, match_spec, valid_header_name

MAX_INDEX = 2147483647


def allow_add(settings, name):
    low = name.lower()
    if low == "subject":
        return True
    if low == "x-sieve-redirected-from":
        return False
    return low not in settings.get("editheader_protected", ()) and \
        low not in settings.get("editheader_forbid_add", ())


def allow_delete(settings, name):
    low = name.lower()
    if low in ("received", "auto-submitted", "x-sieve-redirected-from"):
        return False
    if low == "subject":
        return True
    return low not in settings.get("editheader_protected", ()) and \
        low not in settings.get("editheader_forbid_delete", ())


class LastFlag(TagDef):
    identifier = "last"

    def validate(self, v, node, args, i):
        node.tags["last"] = args[i]
        return i + 1


class IndexTag(TagDef):
    identifier = "index"

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.NUMBER):
            return None
        if param.value > MAX_INDEX:
            v.warning(param.line, "the :index tag for the %s %s has a parameter value "
                      "'%d' exceeding the maximum (%d)"
                      % (node.name, node.kind_name(), param.value, MAX_INDEX))
            return None
        node.tags["index"] = param.value
        return i + 2


class AddHeader(CommandDef):
    name = "addheader"
    positional = 2

    def registered(self, v, reg):
        v.register_tag(reg, LastFlag())

    def validate(self, v, node):
        arg = node.positional[0]
        name = v.positional_value(node, arg, "field-name", 1, S.STRING)
        if name is None:
            return False
        settings = v.env.settings
        if isinstance(name, str):
            if not valid_header_name(name):
                v.error(arg.line, "addheader command: specified field name `%s' is "
                        "invalid" % sanitize(name, 80))
                return False
            if not allow_add(settings, name):
                v.warning(arg.line, "addheader command: adding specified header field "
                          "`%s' is forbidden; modification will be denied"
                          % sanitize(name, 80))
        varg = node.positional[1]
        value = v.positional_value(node, varg, "value", 2, S.STRING)
        if value is None:
            return False
        if isinstance(value, str):
            if "\0" in value:
                v.error(varg.line, "addheader command: specified value `%s' is invalid "
                        "(contains NUL character)" % sanitize(value, 80))
                return False
            size = len(value.encode("utf-8", "surrogateescape"))
            if size > settings.get("editheader_max_header_size", 2048):
                v.error(varg.line, "addheader command: specified header value `%s' is "
                        "too large (%d bytes)" % (sanitize(value, 80), size))
                return False
        node.data = (name, value, "last" in node.tags)
        return True

    def compile(self, c, node):
        return ("addheader", node.line) + node.data


class DeleteHeader(CommandDef):
    name = "deleteheader"
    positional = -1

    def registered(self, v, reg):
        link_match_tags(v, reg)
        v.register_tag(reg, IndexTag())
        v.register_tag(reg, LastFlag())

    def validate(self, v, node):
        if "last" in node.tags and "index" not in node.tags:
            v.error(node.tags["last"].line, "the :last tag for the %s %s cannot be "
                    "specified without the :index tag" % (node.name, node.kind_name()))
        args = node.positional
        if not args:
            v.error(node.line, "the %s %s expects at least one positional argument, "
                    "but none was found" % (node.name, node.kind_name()))
            return False
        if len(args) > 2:
            v.error(node.line, "the %s %s requires %d positional argument(s), but %d "
                    "is/are specified" % (node.name, node.kind_name(), 2, len(args)))
            return False
        arg = args[0]
        if not v.check_positional(node, arg, "field name", 1, S.STRING_LIST):
            return False
        name = v.activate(node, arg)
        if name is None:
            return False
        if isinstance(name, str):
            if not valid_header_name(name):
                v.error(arg.line, "deleteheader command:specified field name `%s' is "
                        "invalid" % sanitize(name, 80))
                return False
            if not allow_delete(v.env.settings, name):
                v.warning(arg.line, "deleteheader command: deleting specified header "
                          "field `%s' is forbidden; modification will be denied"
                          % sanitize(name, 80))
        patterns = spec = None
        if len(args) > 1:
            parg = args[1]
            patterns = v.positional_value(node, parg, "value patterns", 2, S.STRING_LIST)
            if patterns is None:
                return False
            spec = match_spec(v, node, patterns, parg)
            if spec is None:
                return False
        node.data = (name, patterns, spec, node.tags.get("index", 0),
                     "last" in node.tags)
        return True

    def compile(self, c, node):
        return ("deleteheader", node.line) + node.data


def load(v, name):
    v.register_command(AddHeader(), name)
    v.register_command(DeleteHeader(), name)
    return True


def _settings_dict(ctx):
    return ctx.settings.validation_settings()


def _unfold_added(value):
    """An added value as a header test reads it back, as Pigeonhole folds it:
    a line break before a space or tab is dropped (RFC 5322 unfolding), one
    before other text becomes a tab (the fold Pigeonhole inserts), trailing
    line breaks go."""
    lines = value.replace("\r\n", "\n").replace("\r", "\n").rstrip("\n").split("\n")
    out = lines[0]
    for line in lines[1:]:
        out += line if line[:1] in (" ", "\t") else "\t" + line
    return out


def run_addheader(it, op):
    name = it.expand(op[2])
    value = it.expand(op[3])
    settings = _settings_dict(it.ctx)
    if not valid_header_name(name):
        it.error("addheader action: specified field name `%s' is invalid"
                 % sanitize(name, 80))
    if not allow_add(settings, name):
        it.warning("addheader action: adding specified header field `%s' is forbidden; "
                   "modification denied" % sanitize(name, 80))
        return
    if "\0" in value:
        it.error("addheader action: specified value `%s' is invalid (contains NUL "
                 "character)" % sanitize(value, 80))
    size = len(value.encode("utf-8", "surrogateescape"))
    if size > settings.get("editheader_max_header_size", 2048):
        it.error("addheader action: specified header value `%s' is too large (%d bytes)"
                 % (sanitize(value, 80), size))
    value = _unfold_added(value)
    it.ctx.message.add_field(name, value, op[4])


def run_deleteheader(it, op):
    name = it.expand(op[2])
    patterns, spec, index, last = op[3], op[4], op[5], op[6]
    settings = _settings_dict(it.ctx)
    if not valid_header_name(name):
        it.error("deleteheader action: specified field name `%s' is invalid"
                 % sanitize(name, 80))
    if not allow_delete(settings, name):
        it.warning("deleteheader action: deleting specified header field `%s' is "
                   "forbidden; modification denied" % sanitize(name, 80))
        return
    view = it.ctx.message
    fields = view.fields()
    low = name.lower()
    positions = [i for i, (n, _) in enumerate(fields) if n.lower() == low]
    if last:
        positions = positions[::-1]
    keys = it.expand_list(patterns) if patterns is not None else None
    drop = set()
    from ..mail import decode_words
    saved = it.match_values_enabled
    it.match_values_enabled = False
    try:
        for pos, i in enumerate(positions, 1):
            if index and pos != index:
                continue
            if keys is not None and not match(it, spec, [decode_words(fields[i][1])],
                                              keys):
                continue
            drop.add(i)
    finally:
        it.match_values_enabled = saved
    if drop:
        view.delete_fields(drop)


HANDLERS["addheader"] = run_addheader
HANDLERS["deleteheader"] = run_deleteheader
