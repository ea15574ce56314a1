"""reject and ereject (RFC 5429): refuse the message with a reason.

reject sends a rejection (MDN) to the envelope sender; ereject refuses it in the
SMTP/LMTP dialogue where it can. Both conflict with actions that deliver the
message and with other responses (vacation); see result.RejectAction.
"""

from .. import syntax as S
from ..interpreter import HANDLERS
from ..result import RejectAction
from ..defs import CommandDef


class Reject(CommandDef):
    name = "reject"
    positional = 1

    def validate(self, v, node):
        arg = node.positional[0]
        value = v.positional_value(node, arg, "reason", 1, S.STRING)
        if value is None:
            return False
        node.data = value
        return True

    def compile(self, c, node):
        return ("reject", node.line, node.data, self.name == "ereject")


class EReject(Reject):
    name = "ereject"


def _check_envelope(v, arg, required):
    if required and v.env.no_envelope:
        v.error(arg.line if arg else 0, "the reject extension cannot be used in this "
                "context (needs access to message envelope)")
        return False
    return True


def load(v, name):
    v.register_command(EReject() if name == "ereject" else Reject(), name)
    v.post_validators.append((name, _check_envelope))
    return True


def run_reject(it, op):
    reason = it.expand(op[2])
    it.result.add(it, RejectAction(it.location(), reason, op[3]))


HANDLERS["reject"] = run_reject
