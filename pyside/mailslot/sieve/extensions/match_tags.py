"""The shared tagged arguments of match tests (RFC 5228 2.7): :comparator, the
match types (:is :contains :matches, and those extensions add: :regex, :count,
:value) and the address parts (:all :localpart :domain, and subaddress's).

link_match_tags() registers them on a command; match_spec() checks the match
type against the comparator and keys and returns the (match-type, relation,
comparator) triple match.py runs; SubjectMatchTest is a test of one subject
against a key list (string, environment, ...). The core and every extension
with a match test (body, date, editheader, enotify, envelope, imap4flags,
spamtest, variables, ...) build on this module, which imports none of them: it
is what keeps the extension modules free of import cycles.

Errors: reported to the validator (messages as Pigeonhole's); nothing raises.
"""

from .. import syntax as S
from ..diagnostics import sanitize
from ..match import COMPARATORS
from ..defs import CommandDef, TagDef

OPT_COMPARATOR, OPT_MATCH_TYPE, OPT_ADDRESS_PART = 1, 2, 3


# -- shared tags ------------------------------------------------------------------

class ComparatorTag(TagDef):
    identifier = "comparator"
    id_code = OPT_COMPARATOR

    def validate(self, v, node, args, i):
        tag = args[i]
        param = args[i + 1] if i + 1 < len(args) else None
        if not v.tag_parameter(node, tag, param, None, 0, S.STRING):
            return None
        value = v.activate(node, param)
        if value is None:
            return None
        if not isinstance(value, str):
            v.error(param.line, "this Sieve implementation currently only supports "
                    "a literal string argument for the :comparator tag")
            return None
        name = value.lower()
        if name not in v.comparators:
            v.error(param.line, "unknown comparator '%s'" % sanitize(value, 80))
            return None
        node.tags["comparator"] = name
        node.tags["comparator_arg"] = tag
        return i + 2


class MatchTypeTag(TagDef):
    identifier = "MATCH-TYPE"
    id_code = OPT_MATCH_TYPE
    instanced = True

    def is_instance_of(self, v, node, ident):
        low = ident.lower()
        return low if low in v.match_types else None

    def validate(self, v, node, args, i):
        tag = args[i]
        mtype = tag.data
        node.tags["match_type"] = mtype
        node.tags["match_arg"] = tag
        hook = v.match_types.get(mtype)
        if hook is not None:
            return hook(v, node, args, i)
        return i + 1


class AddressPartTag(TagDef):
    identifier = "ADDRESS-PART"
    id_code = OPT_ADDRESS_PART
    instanced = True

    def is_instance_of(self, v, node, ident):
        low = ident.lower()
        return low if low in v.address_parts else None

    def validate(self, v, node, args, i):
        node.tags["address_part"] = args[i].data
        return i + 1


COMPARATOR_TAG = ComparatorTag()
MATCH_TYPE_TAG = MatchTypeTag()
ADDRESS_PART_TAG = AddressPartTag()


def link_match_tags(v, reg, address_part=False):
    v.register_tag(reg, COMPARATOR_TAG)
    v.register_tag(reg, MATCH_TYPE_TAG)
    if address_part:
        v.register_tag(reg, ADDRESS_PART_TAG)


def match_spec(v, node, keys_compiled, key_arg, default_cmp="i;ascii-casemap"):
    """Check the match type against the comparator and keys; return the spec or None."""
    tags = node.tags
    mtype = tags.get("match_type", "is")
    cmp_name = tags.get("comparator", default_cmp)
    cmp = COMPARATORS[cmp_name]
    if mtype in ("contains", "matches") and not cmp.substring:
        arg = tags.get("match_arg")
        v.error(arg.line if arg else node.line,
                "the specified %s comparator does not support sub-string matching "
                "as required by the :%s match type" % (cmp_name, mtype))
        return None
    if mtype == "regex":
        from .regex import validate_regex_keys
        if not validate_regex_keys(v, node, cmp_name, keys_compiled, key_arg):
            return None
    return (mtype, tags.get("relation"), cmp_name)


def key_list_and_spec(v, node, key_arg, pos, default_cmp="i;ascii-casemap"):
    """The key list at positional pos and the match spec it allows: (keys, spec).

    None when either is refused (reported): the shared tail of every match test.
    """
    keys = v.positional_value(node, key_arg, "key list", pos, S.STRING_LIST)
    if keys is None:
        return None
    spec = match_spec(v, node, keys, key_arg, default_cmp)
    return None if spec is None else (keys, spec)


class SubjectMatchTest(CommandDef):
    """A test of one subject argument against a key list (string, environment).

    Subclasses name the subject (subject_name, subject_type); node.data becomes
    (subject, keys, spec).
    """
    is_test = True
    positional = 2
    subject_name = "source"
    subject_type = S.STRING_LIST
    default_comparator = "i;ascii-casemap"

    def registered(self, v, reg):
        link_match_tags(v, reg)

    def validate(self, v, node):
        subject = v.positional_value(node, node.positional[0], self.subject_name, 1,
                                     self.subject_type)
        if subject is None:
            return False
        matched = key_list_and_spec(v, node, node.positional[1], 2,
                                    self.default_comparator)
        if matched is None:
            return False
        node.data = (subject,) + matched
        return True

    def compile(self, c, node):
        return (self.name, node.line) + node.data
