"""vnd.dovecot.debug (Pigeonhole's vendor extension): debug_log "message".

debug_log writes "DEBUG: <message>" as an info line, without a location, to the
script's log (the user's Sieve log when the run is logged), as Pigeonhole's
sieve_runtime_log does. Off by default, as in Pigeonhole
(sieve_extensions = +vnd.dovecot.debug). It has no effect on the result.

Security: the message is script data; it is sanitised (control characters) and
cut like any other log text, and adds one line per command run.
"""

from .. import syntax as S
from ..defs import CommandDef
from ..diagnostics import sanitize
from ..interpreter import HANDLERS

# The longest message kept in a log line (Dovecot's str_sanitize of log text).
MAX_LOGGED_MESSAGE = 1024


class DebugLog(CommandDef):
    name = "debug_log"
    positional = 1

    def validate(self, v, node):
        value = v.positional_value(node, node.positional[0], "message", 1, S.STRING)
        if value is None:
            return False
        node.data = value
        return True

    def compile(self, c, node):
        return ("debug_log", node.line, node.data)


def load(v, name):
    v.register_command(DebugLog(), name)
    return True


def run_debug_log(it, op):
    message = sanitize(it.expand(op[2]), MAX_LOGGED_MESSAGE)
    it.ctx.diag.info("", "DEBUG: " + message)


HANDLERS["debug_log"] = run_debug_log
