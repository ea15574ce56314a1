"""variables (RFC 5229): set, the string test, ${name} substitution, match values.

Strings with "${...}" become templates at compile time (compile_template); the
interpreter substitutes them. Variable names are case-insensitive; ${1}..${31}
are the match values of the last successful :matches/:regex; ${a.b} names a
variable in a namespace (include's "global"). A script declares at most
max_scope_size variables (Pigeonhole's sieve_variables_max_scope_size); values
are cut to max_variable_size bytes.

set modifiers: :lower :upper (ASCII only, as Pigeonhole), :lowerfirst
:upperfirst, :quotewildcard, :length, and enotify's :encodeurl; applied highest
precedence first; two of equal precedence are an error.
"""

from .. import syntax as S
from ..diagnostics import sanitize
from ..limits import DEFAULT_MAX_VARIABLE_SCOPE_SIZE, MAX_MATCH_VALUES
from ..defs import CommandDef, TagDef
from ..defs import parse_variable_name
from .match_tags import SubjectMatchTest
# The run-time half; importing it registers set and string.
from .variables_runtime import apply_modifier, assign  # noqa: F401 (re-exported)

PRECEDENCE = {"lower": 40, "upper": 40, "lowerfirst": 30, "upperfirst": 30,
              "quotewildcard": 20, "encodeurl": 15, "length": 10}


def declare(v, name, line):
    """Declare a variable in the script's scope; False (reported) over the limit."""
    low = name.lower()
    if low in v.variables:
        return True
    limit = v.env.settings.get("variables_max_scope_size",
                               DEFAULT_MAX_VARIABLE_SCOPE_SIZE)
    if len(v.variables) >= limit:
        # Reported once, like Pigeonhole: later declarations past the limit
        # fail silently (the script does not compile either way).
        if not v.ext_context.get("variables_scope_full"):
            v.ext_context["variables_scope_full"] = True
            v.error(line, "(implicit) declaration of new variable '%s' exceeds the "
                    "limit (max variables: %d)" % (name, limit))
        return False
    v.variables.add(low)
    return True


def compile_template(v, text, line):
    """Split text at its valid ${...} references; str if there are none."""
    parts = []
    n = len(text)
    start = 0
    i = 0
    found = False
    while i < n:
        if text[i] != "$" or i + 1 >= n or text[i + 1] != "{":
            i += 1
            continue
        sub_start = i
        elements, end = parse_variable_name(text, i + 2)
        if elements is None or end >= n or text[end] != "}":
            i = i + 2 if elements is None else end
            continue
        found = True
        if sub_start > start:
            parts.append(text[start:sub_start])
        ref = _reference(v, elements, line)
        if ref is None:
            if elements and not isinstance(elements[0], int) and len(elements) > 1 \
                    and str(elements[0]).lower() not in v.namespaces:
                # Pigeonhole reports an unknown namespace but compiles on, with
                # the reference dropped.
                i = end + 1
                start = i
                continue
            return None
        parts.append(ref)
        i = end + 1
        start = i
    if not found:
        return text
    if start < n:
        parts.append(text[start:])
    return {"$": parts}


def _reference(v, elements, line):
    if len(elements) == 1:
        name = elements[0]
        if isinstance(name, int):
            if name > MAX_MATCH_VALUES:
                v.error(line, "match value index %d out of range (max: %d)"
                        % (name, MAX_MATCH_VALUES))
                return None
            return ("m", name)
        if name.lower() in v.globals:
            return ("n", "global", name.lower())
        if not declare(v, name, line):
            return None
        return ("v", name.lower())
    namespace = str(elements[0]).lower()
    handler = v.namespaces.get(namespace)
    if handler is None:
        v.error(line, "referring to variable in unknown namespace '%s'" % elements[0])
        return None
    return handler(v, elements, line, False)


def variable_target(v, node, arg):
    """Compile the name argument of set (or a similar assignment target)."""
    text = arg.value
    elements, end = parse_variable_name(text, 0)
    if not elements or end != len(text):
        v.error(arg.line, "invalid variable name '%s'" % sanitize(text, 80))
        return None
    if len(elements) == 1:
        name = elements[0]
        if isinstance(name, int):
            v.error(arg.line, "cannot assign to match variable")
            return None
        if name.lower() in v.globals:
            return ("n", "global", name.lower())
        if not declare(v, name, arg.line):
            return None
        return ("v", name.lower())
    namespace = str(elements[0]).lower()
    handler = v.namespaces.get(namespace)
    if handler is None:
        v.error(arg.line, "referring to variable in unknown namespace '%s'"
                % elements[0])
        return None
    return handler(v, elements, arg.line, True)


class ModifierTag(TagDef):
    identifier = "MODIFIER"
    instanced = True
    multiple = True

    def is_instance_of(self, v, node, ident):
        low = ident.lower()
        return low if low in v.ext_context.get("modifiers", ()) else None

    def validate(self, v, node, args, i):
        name = args[i].data
        mods = node.tags.setdefault("modifiers", [])
        for other in mods:
            if PRECEDENCE[other] == PRECEDENCE[name]:
                v.error(args[i].line, "modifiers :%s and :%s specified for the set "
                        "command conflict having equal precedence" % (other, name))
                return None
        mods.append(name)
        return i + 1


class Set(CommandDef):
    name = "set"
    positional = 2

    def registered(self, v, reg):
        v.register_tag(reg, ModifierTag())

    def validate(self, v, node):
        arg = node.positional[0]
        if not v.check_positional(node, arg, "name", 1, S.STRING):
            return False
        target = variable_target(v, node, arg)
        if target is None:
            return False
        varg = node.positional[1]
        value = v.positional_value(node, varg, "value", 2, S.STRING)
        if value is None:
            return False
        mods = sorted(node.tags.get("modifiers", []), key=lambda m: -PRECEDENCE[m])
        node.data = (target, value, mods)
        return True

    def compile(self, c, node):
        target, value, mods = node.data
        return ("set", node.line, target, value, mods)


class StringTest(SubjectMatchTest):
    name = "string"
    # Pigeonhole's string test compares with i;octet when no :comparator is
    # given (tst-string.c), not RFC 5228's i;ascii-casemap: scripts written
    # for Dovecot rely on `string :is "${x}" "Foo"` being case-sensitive.
    default_comparator = "i;octet"


def load(v, name):
    if v.variables is None:
        v.variables = set()
    v.ext_context.setdefault("modifiers", set()).update(
        ("lower", "upper", "lowerfirst", "upperfirst", "quotewildcard", "length"))
    v.register_command(Set(), name)
    v.register_command(StringTest(), name)
    return True
