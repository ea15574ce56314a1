"""ihave (RFC 5463): the ihave test and the error command.

ihave is decided when the script is compiled, as in Pigeonhole: when every named
capability is known (and is not variables or encoded-character), they are loaded
for the rest of the script and the test is true at run time; otherwise the test
is constant false and what it guards is not even checked. error "<message>"
fails the run with that message.
"""

from .. import syntax as S
from ..interpreter import HANDLERS, TESTS, SieveRunError
from ..defs import CommandDef


class IHave(CommandDef):
    name = "ihave"
    is_test = True
    positional = 1
    has_validate_const = True

    def validate(self, v, node):
        from . import EXTENSIONS
        arg = node.positional[0]
        node.data = {"known": False}
        if not v.check_positional(node, arg, "capabilities", 1, S.STRING_LIST):
            return False
        names = arg.strings()
        node.data["caps"] = list(names)
        if not all(n in EXTENSIONS and n in v.env.enabled for n in names):
            return True
        if any(n in ("variables", "encoded-character") for n in names):
            return True
        for n in names:
            if not v.load_extension(n, node, arg, required=False):
                return False
        node.data["known"] = True
        return True

    def validate_const(self, v, node, current, nxt):
        known = isinstance(node.data, dict) and node.data.get("known")
        return True, (-1 if known else 0)

    def compile(self, c, node):
        return ("ihave", node.line, node.data["caps"])


class Error(CommandDef):
    name = "error"
    positional = 1

    def validate(self, v, node):
        arg = node.positional[0]
        value = v.positional_value(node, arg, "message", 1, S.STRING)
        if value is None:
            return False
        node.data = value
        return True

    def compile(self, c, node):
        return ("error", node.line, node.data)


def load(v, name):
    v.register_command(IHave(), name)
    v.register_command(Error(), name)
    return True


def test_ihave(it, op):
    from . import EXTENSIONS
    enabled = it.ctx.enabled_extensions
    for cap in op[2]:
        if cap not in EXTENSIONS or (enabled is not None and cap not in enabled):
            return False
    return True


def run_error(it, op):
    raise SieveRunError("", it.expand(op[2]))


TESTS["ihave"] = test_ihave
HANDLERS["error"] = run_error
