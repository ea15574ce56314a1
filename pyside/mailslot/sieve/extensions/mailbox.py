"""mailbox (RFC 5490): fileinto :create, and the mailboxexists test.

mailboxexists is true when every named mailbox exists (the host's
mailbox_exists callback decides; sieve-test has no mail storage and answers
false, as Pigeonhole's does without -l).
"""

from .. import syntax as S
from ..interpreter import TESTS
from ..defs import CommandDef, TagDef


class CreateTag(TagDef):
    identifier = "create"

    def validate(self, v, node, args, i):
        node.tags.setdefault("effects", []).append(("create",))
        return i + 1


class MailboxExists(CommandDef):
    name = "mailboxexists"
    is_test = True
    positional = 1

    def validate(self, v, node):
        arg = node.positional[0]
        names = v.positional_value(node, arg, "mailbox-names", 1, S.STRING_LIST)
        if names is None:
            return False
        node.data = names
        return True

    def compile(self, c, node):
        return ("mailboxexists", node.line, node.data)


def load(v, name):
    v.register_external_tag("fileinto", CreateTag())
    v.register_command(MailboxExists(), name)
    return True


def test_mailboxexists(it, op):
    check = it.ctx.mailbox_exists
    for name in it.expand_list(op[2]):
        if check is None or not check(name):
            return False
    return True


TESTS["mailboxexists"] = test_mailboxexists
