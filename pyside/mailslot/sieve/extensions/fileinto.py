"""fileinto (RFC 5228 4.1): store the message in a named folder.

fileinto [:copy] [:flags <flags>] [:create] <folder: string>. The folder name must
be valid UTF-8 (checked at compile time for literals, at run time otherwise); the
mailbox syntax beyond that is the storage's to judge when the action is carried
out.
"""

from .. import syntax as S
from ..diagnostics import sanitize
from ..defs import CommandDef
from .core import collect_effects
from .core_runtime import valid_utf8  # the run-time half (registers the handler)


class Fileinto(CommandDef):
    name = "fileinto"
    positional = 1

    def validate(self, v, node):
        arg = node.positional[0]
        value = v.positional_value(node, arg, "folder", 1, S.STRING)
        if value is None:
            return False
        if isinstance(value, str) and not valid_utf8(value):
            v.error(node.line, "fileinto command: invalid folder name `%s' specified: "
                    "invalid utf-8" % sanitize(value, 256))
            return False
        node.data = value
        return True

    def compile(self, c, node):
        return ("fileinto", node.line, node.data, collect_effects(node))


def load(v, name):
    v.register_command(Fileinto(), name)
    return True
