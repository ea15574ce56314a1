"""The shapes of Sieve commands, tests and tagged arguments.

CommandDef and TagDef are the base classes every extension's definitions derive
from (see validator.py for how they are used); Registration is the validator's
record of a command and its tags. Apart from validator.py so that loading an
extension to run a cached program does not import the compiler.
parse_variable_name() and valid_variable_identifier() are RFC 5229's name syntax.
"""

from .limits import MAX_VARIABLE_NAME_LEN, MAX_VARIABLE_NAMESPACE_ELEMENTS


class TagDef:
    """A tagged argument. validate() consumes the tag (and its parameters)."""

    identifier = ""
    id_code = 0
    multiple = False
    instanced = False   # True: is_instance_of() decides which identifiers match

    def is_instance_of(self, v, node, ident):
        return None

    def validate(self, v, node, args, i):
        """Validate the tag at args[i]; return the index after it, or None."""
        node.tags[self.identifier] = True
        return i + 1

    def validate_persistent(self, v, node):
        return True


class ValueTag(TagDef):
    """A tag with one parameter (:from "a@b", :options ["x"]) of the given kind
    (syntax.STRING by default, or syntax.STRING_LIST), compiled and stored in
    node.tags[identifier]. Subclasses refine check() (before the value is compiled)
    and accept() (after); both report their own errors and return False to refuse.
    """

    def __init__(self, ident, kind=None):
        self.identifier = ident
        self.kind = kind

    def validate(self, v, node, args, i):
        from . import syntax as S   # compile time only: syntax is the parser's
        kind = S.STRING if self.kind is None else self.kind
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, kind):
            return None
        if not self.check(v, node, param):
            return None
        if kind == S.STRING_LIST:
            value = v.activate_list(node, param)
        else:
            value = v.activate(node, param)
        if value is None or not self.accept(v, node, param, value):
            return None
        node.tags[self.identifier] = value
        return i + 2

    def check(self, v, node, param):
        return True

    def accept(self, v, node, param, value):
        return True


class CommandDef:
    """A command or test. Subclasses set the class attributes and override hooks."""

    name = ""
    is_test = False
    positional = 0        # -1: any number
    subtests = 0          # 0, 1 or 2 (a list)
    block_allowed = False
    block_required = False
    has_validate_const = False
    extension = None      # module name providing the runtime handler

    def registered(self, v, reg):
        pass

    def pre_validate(self, v, node):
        return True

    def validate(self, v, node):
        return True

    def validate_const(self, v, node, current, nxt):
        """Return (continue, new current value). Only when has_validate_const."""
        return True, nxt

    def compile(self, c, node):
        raise NotImplementedError(self.name)

    def type_name(self):
        return "test" if self.is_test else "command"


class Registration:
    __slots__ = ("definition", "ext", "tags", "instanced", "persistent", "unknown")

    def __init__(self, definition=None, ext=None):
        self.definition = definition
        self.ext = ext
        self.tags = []          # (identifier, TagDef)
        self.instanced = []     # TagDef with instanced=True
        self.persistent = []
        self.unknown = False


def valid_variable_identifier(name):
    if not name or len(name) >= MAX_VARIABLE_NAME_LEN:
        return False
    if not (name[0] == "_" or name[0].isascii() and name[0].isalpha()):
        return False
    return all(c == "_" or (c.isascii() and c.isalnum()) for c in name)


def parse_variable_name(text, pos):
    """Parse a variable name at text[pos:]; return (elements, end) or (None, end).

    Elements are str identifiers or int match indexes (RFC 5229 section 3).
    """
    elements = []
    n = len(text)
    p = pos
    while p < n:
        if len(elements) >= MAX_VARIABLE_NAMESPACE_ELEMENTS:
            return None, p
        ch = text[p]
        if ch == "_" or (ch.isascii() and ch.isalpha()):
            q = p + 1
            while q < n and (text[q] == "_" or (text[q].isascii() and text[q].isalnum())):
                if q - p >= MAX_VARIABLE_NAME_LEN:
                    return None, q
                q += 1
            elements.append(text[p:q])
            p = q
        elif "0" <= ch <= "9":
            q = p + 1
            while q < n and "0" <= text[q] <= "9":
                q += 1
            elements.append(int(text[p:q]))
            p = q
            if len(elements) == 1:
                return elements, p
        else:
            return None, p
        if p < n and text[p] == ".":
            p += 1
            if p >= n:
                return None, p
        else:
            break
    return elements, p
