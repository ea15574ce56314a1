"""The core language (RFC 5228): its commands, tests and shared tagged arguments.

Commands: require, if/elsif/else, stop, keep, discard, redirect. Tests: address,
header, exists, size, not, anyof, allof, true, false. Shared tags: :comparator,
the match types (:is :contains :matches, and those extensions add), the address
parts (:all :localpart :domain, and subaddress's). match_spec() turns them into
the (match-type, relation, comparator) triple match.py runs.

Messages are Pigeonhole's (see validator.py); run-time behaviour follows RFC 5228
and Pigeonhole where the RFC leaves a choice (documented in docs/sieve.md).
"""

from .. import syntax as S
from ..address import AddressError, parse_sieve_address
from ..diagnostics import sanitize
from ..defs import CommandDef, TagDef
# The shared match tags; re-exported for the extensions that build on core.
from .match_tags import (ADDRESS_PART_TAG, COMPARATOR_TAG, MATCH_TYPE_TAG,  # noqa: F401
                         OPT_ADDRESS_PART, OPT_COMPARATOR, OPT_MATCH_TYPE,
                         SubjectMatchTest, key_list_and_spec, link_match_tags,
                         match_spec)
# The run-time half; importing it registers the handlers. Re-exported for the
# extensions that build on core's tests and actions.
from .core_runtime import (address_values, extract_part, header_source,  # noqa: F401
                           make_effects)

# RFC 5228 5.1 and Pigeonhole's list of headers the address test accepts.
ADDRESS_HEADERS = frozenset((
    "from", "to", "cc", "bcc", "sender", "resent-from", "resent-to",
    "reply-to", "resent-reply-to", "resent-sender", "resent-cc", "resent-bcc",
    "for-approval", "for-handling", "for-comment", "apparently-to", "errors-to",
    "delivered-to", "return-receipt-to", "x-admin", "read-receipt-to",
    "x-confirm-reading-to", "return-receipt-requested",
    "registered-mail-reply-requested-by", "mail-followup-to", "mail-reply-to",
    "abuse-reports-to", "x-complaints-to", "x-report-abuse-to",
    "x-beenthere", "x-original-to",
))


def verify_header_names(v, arg, names):
    """Warn about invalid literal header names (RFC 5322 field-name)."""
    for name, line in zip(names, arg.string_lines()):
        if isinstance(name, str) and not valid_header_name(name):
            v.warning(line, "specified header field name '%s' is invalid"
                      % sanitize(name, 80))
            return


def valid_header_name(name):
    if not name:
        return False
    return all(33 <= ord(c) <= 126 and c != ":" for c in name)


# -- control commands -------------------------------------------------------------

class Require(CommandDef):
    name = "require"
    positional = 1

    def validate(self, v, node):
        # Only at top level, and only after other require commands.
        ok = node.parent is None
        if ok:
            prev = v.current_block_prev(node)
            if prev is not None and prev.name.lower() != "require":
                ok = False
        if not ok:
            v.error(node.line, "require commands can only be placed at top level at "
                    "the beginning of the file")
            return False
        arg = node.positional[0]
        if arg.kind == S.STRING:
            return v.require_by_name(node, arg.line, arg.value)
        if arg.kind == S.STRING_LIST:
            result = True
            for item, line in zip(arg.items, arg.item_lines):
                if not v.require_by_name(node, line, item):
                    result = False
            return result
        v.error(arg.line, "the require command accepts a single string or string "
                "list argument, but %s was found" % arg.type_name())
        return False

    def compile(self, c, node):
        return None


class IfData(dict):
    pass


class If(CommandDef):
    name = "if"
    subtests = 1
    block_allowed = True
    block_required = True
    has_validate_const = True

    def validate(self, v, node):
        node.data = IfData(const=-1, previous=None)
        return True

    def validate_const(self, v, node, current, nxt):
        data = node.data
        if isinstance(data, dict):
            if data["const"] == 0:
                return False, 0
            data["const"] = nxt
        return nxt < 0, nxt

    def compile(self, c, node):  # handled by the Compiler's if-chain logic
        raise AssertionError


class Elsif(If):
    name = "elsif"

    def validate(self, v, node):
        prev = v.current_block_prev(node)
        if prev is None or prev.definition is None or \
                prev.definition.name not in ("if", "elsif"):
            v.error(node.line, "the %s command must follow an if or elseif command"
                    % node.name)
            return False
        const = -1
        prev_data = prev.data if isinstance(prev.data, dict) else None
        p = prev_data
        while p is not None:
            if p["const"] > 0:
                const = 0
                break
            p = p["previous"]
        node.data = IfData(const=const, previous=prev_data)
        return True


class Else(Elsif):
    name = "else"
    subtests = 0


class Stop(CommandDef):
    name = "stop"

    def compile(self, c, node):
        return ("stop", node.line)


def collect_effects(node):
    """The side-effect tags of an action command, in argument order."""
    return list(node.tags.get("effects", ()))


class Keep(CommandDef):
    name = "keep"

    def compile(self, c, node):
        return ("keep", node.line, collect_effects(node))


class Discard(CommandDef):
    name = "discard"

    def compile(self, c, node):
        return ("discard", node.line)


class Redirect(CommandDef):
    name = "redirect"
    positional = 1

    def validate(self, v, node):
        arg = node.positional[0]
        value = v.positional_value(node, arg, "address", 1, S.STRING)
        if value is None:
            return False
        node.data = value
        if isinstance(value, str):
            try:
                parse_sieve_address(value)
            except AddressError as exc:
                v.error(arg.line, "specified redirect address '%s' is invalid: %s"
                        % (sanitize(value, 128), exc))
                return False
            return True
        if v.env.settings.get("max_redirects", 4) == 0:
            v.error(node.line, "local policy prohibits the use of a redirect action")
            return False
        return True

    def compile(self, c, node):
        return ("redirect", node.line, node.data, collect_effects(node))


# -- tests ------------------------------------------------------------------------

class TestDef(CommandDef):
    is_test = True


class Address(TestDef):
    name = "address"
    positional = 2

    def registered(self, v, reg):
        link_match_tags(v, reg, address_part=True)

    def validate(self, v, node):
        arg = node.positional[0]
        headers = v.positional_value(node, arg, "header list", 1, S.STRING_LIST)
        if headers is None:
            return False
        verify_header_names(v, arg, headers)
        for name, line in zip(headers, arg.string_lines()):
            if isinstance(name, str) and name.lower() not in ADDRESS_HEADERS:
                v.error(line, "specified header '%s' is not allowed for the address "
                        "test" % sanitize(name, 64))
                return False
        matched = key_list_and_spec(v, node, node.positional[1], 2)
        if matched is None:
            return False
        keys, spec = matched
        node.data = {"headers": headers, "keys": keys, "spec": spec,
                     "part": node.tags.get("address_part", "all")}
        return True

    def compile(self, c, node):
        p = dict(node.data)
        add_header_options(node, p)
        return ("address", node.line, p)


class Header(TestDef):
    name = "header"
    positional = 2

    def registered(self, v, reg):
        link_match_tags(v, reg)

    def validate(self, v, node):
        arg = node.positional[0]
        headers = v.positional_value(node, arg, "header names", 1, S.STRING_LIST)
        if headers is None:
            return False
        verify_header_names(v, arg, headers)
        matched = key_list_and_spec(v, node, node.positional[1], 2)
        if matched is None:
            return False
        keys, spec = matched
        node.data = {"headers": headers, "keys": keys, "spec": spec}
        return True

    def compile(self, c, node):
        p = dict(node.data)
        add_header_options(node, p)
        return ("header", node.line, p)


def add_header_options(node, p):
    """Copy :index/:last and :mime options (index, mime extensions) into p."""
    for key in ("index", "last", "mime", "anychild", "mime_option", "mime_param"):
        if key in node.tags:
            p[key] = node.tags[key]


class Exists(TestDef):
    name = "exists"
    positional = 1

    def validate(self, v, node):
        arg = node.positional[0]
        headers = v.positional_value(node, arg, "header names", 1, S.STRING_LIST)
        if headers is None:
            return False
        verify_header_names(v, arg, headers)
        node.data = {"headers": headers}
        return True

    def compile(self, c, node):
        p = dict(node.data)
        add_header_options(node, p)
        return ("exists", node.line, p)


_SIZE_DUP = ("exactly one of the ':under' or ':over' tags must be specified for the "
             "size test, but more were found")


class SizeTag(TagDef):
    def __init__(self, ident):
        self.identifier = ident

    def validate(self, v, node, args, i):
        if node.tags.get("size"):
            v.error(args[i].line, _SIZE_DUP)
            return None
        node.tags["size"] = self.identifier
        return i + 1


class Size(TestDef):
    name = "size"
    positional = 1

    def registered(self, v, reg):
        v.register_tag(reg, SizeTag("over"))
        v.register_tag(reg, SizeTag("under"))

    def validate(self, v, node):
        if not node.tags.get("size"):
            v.error(node.line, "the size test requires either the :under or the :over "
                    "tag to be specified")
            return False
        arg = node.positional[0]
        if not v.check_positional(node, arg, "limit", 1, S.NUMBER):
            return False
        node.data = arg.value
        return True

    def compile(self, c, node):
        return ("size", node.line, node.tags["size"] == "over", node.data)


class Not(TestDef):
    name = "not"
    subtests = 1
    has_validate_const = True

    def validate_const(self, v, node, current, nxt):
        if nxt < 0:
            return True, -1
        return True, 0 if nxt > 0 else 1

    def compile(self, c, node):
        return ("not", node.line, c.test(node.tests[0]))


class _TestList(TestDef):
    """allof/anyof: a list of tests that one decisive result settles (false for
    allof, true for anyof); an empty list is the other value."""

    subtests = 2
    has_validate_const = True
    decisive = 0        # the constant result that settles the whole list
    empty = "true"      # what an empty list compiles to

    def validate_const(self, v, node, current, nxt):
        if nxt == self.decisive:
            return False, self.decisive
        if current != -1:
            current = nxt
        return True, current

    def compile(self, c, node):
        tests = c.tests(node.tests)
        if not tests:
            return (self.empty, node.line)
        return (self.name, node.line, tests)


class AllOf(_TestList):
    name = "allof"


class AnyOf(_TestList):
    name = "anyof"
    decisive = 1
    empty = "false"


class TrueTest(TestDef):
    name = "true"
    has_validate_const = True

    def validate_const(self, v, node, current, nxt):
        return True, 1

    def compile(self, c, node):
        return ("true", node.line)


class FalseTest(TestDef):
    name = "false"
    has_validate_const = True

    def validate_const(self, v, node, current, nxt):
        return True, 0

    def compile(self, c, node):
        return ("false", node.line)


CORE = (Require(), If(), Elsif(), Else(), Stop(), Keep(), Discard(), Redirect(),
        Address(), Header(), Exists(), Size(), Not(), AllOf(), AnyOf(), TrueTest(),
        FalseTest())


def load_core(v):
    for definition in CORE:
        v.register_command(definition)
