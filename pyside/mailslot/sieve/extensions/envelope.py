"""envelope (RFC 5228 5.4): test the SMTP envelope: "from", "to" and "auth".

"to" is the original recipient when the MTA gave one (-a), else the recipient.
The null sender <> is the empty string. "auth" is the authenticated user, not
an address, and takes no address part.
"""

from .. import syntax as S
from ..diagnostics import sanitize
from ..defs import CommandDef
from .core import link_match_tags, key_list_and_spec
from . import core_runtime  # noqa: F401 (the run-time half: registers the test)

PARTS = ("from", "to", "auth")


class Envelope(CommandDef):
    name = "envelope"
    is_test = True
    positional = 2

    def registered(self, v, reg):
        link_match_tags(v, reg, address_part=True)

    def validate(self, v, node):
        arg = node.positional[0]
        parts = v.positional_value(node, arg, "envelope part", 1, S.STRING_LIST)
        if parts is None:
            return False
        not_address = None
        for part, line in zip(parts, arg.string_lines()):
            if isinstance(part, str):
                if part.lower() not in PARTS:
                    v.error(line, "specified envelope part '%s' is not supported by "
                            "the envelope test" % sanitize(part, 64))
                    return False
                if part.lower() == "auth" and not_address is None:
                    not_address = part.lower()
        if not_address is not None and "address_part" in node.tags:
            line = node.line
            for a in node.args:
                if a.kind == S.TAG and a.value.lower() == node.tags["address_part"]:
                    line = a.line
                    break
            v.error(line, "address part ':%s' specified while non-address envelope "
                    "part '%s' is tested with the envelope test"
                    % (node.tags["address_part"], not_address))
            return False
        matched = key_list_and_spec(v, node, node.positional[1], 2)
        if matched is None:
            return False
        keys, spec = matched
        node.data = {"parts": parts, "keys": keys, "spec": spec,
                     "part": node.tags.get("address_part", "all")}
        return True

    def compile(self, c, node):
        return ("envelope", node.line, node.data)


def _check(v, arg, required):
    if required and v.env.no_envelope:
        v.error(arg.line if arg else 0, "the envelope extension cannot be used in "
                "this context (needs access to message envelope)")
        return False
    return True


def load(v, name):
    v.register_command(Envelope(), name)
    v.post_validators.append((name, _check))
    return True
